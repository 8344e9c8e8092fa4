"""Checks at the public boundary: one place for the error messages users read."""
from __future__ import annotations

import torch


class NeuralPriorError(ValueError):
    """A user-facing error: the message is one line that says what to fix."""


def check_image(x: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Return ``x`` as a 4-D float tensor (N, C, H, W), or raise a clear error."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W) or (C, H, W), got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise NeuralPriorError(f"{name} must have shape (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor with values in [0, 1], got {x.dtype}")
    if x.shape[-1] < 2 or x.shape[-2] < 2:
        raise NeuralPriorError(f"{name} is {x.shape[-2]}x{x.shape[-1]} pixels; at least 2x2 is needed")
    return x


def check_betas(value, name: str = "betas") -> tuple[float, float]:
    """``value`` as the optimiser's (beta1, beta2): two numbers in [0, 1)."""
    try:
        betas = tuple(float(b) for b in value)
    except (TypeError, ValueError):
        betas = ()
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise NeuralPriorError(f"{name} must be two numbers in [0, 1), got {value!r}")
    return betas


def check_positive_int(value, name: str) -> int:
    """``value`` as a positive int; floats like 2.0 pass, 2.5 or 0 do not."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise NeuralPriorError(f"{name} must be a positive integer, got {value!r}") from None
    if f != int(f) or f < 1:
        raise NeuralPriorError(f"{name} must be a positive integer, got {value!r}")
    return int(f)


def check_jpeg_quality(value, name: str = "quality") -> int:
    """``value`` as a JPEG quality, an int from 1 to 100."""
    q = check_positive_int(value, name)
    if q > 100:
        raise NeuralPriorError(f"{name} must be a JPEG quality from 1 to 100, got {value!r}")
    return q
