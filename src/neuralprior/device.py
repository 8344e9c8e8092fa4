"""Device and precision, decided in one place."""
from __future__ import annotations

import contextlib

import torch

from ._validation import NeuralPriorError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else CPU. Otherwise the named device, checked."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise NeuralPriorError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NeuralPriorError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise NeuralPriorError(f"device {name!r} requested but MPS is not available; use --device cpu")
    return dev


def bfloat16_is_fast(device: torch.device) -> bool:
    """True where bfloat16 convolutions run in hardware (CUDA with bf16, CPUs with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = getattr(torch.backends.mkldnn, "is_bf16_supported", None) or getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        try:
            return bool(probe()) if probe else False
        except Exception:  # pragma: no cover - depends on the build
            return False
    return False


def autocast_context(device: torch.device, precision: str, cache: bool = True):
    """The autocast context for ``precision``: ``float32`` (none), ``bfloat16``, ``float16`` or ``auto``.

    ``cache=False`` recasts the weights at every use, as recording a CUDA graph requires."""
    if precision == "auto":
        precision = "bfloat16" if bfloat16_is_fast(device) else "float32"
    if precision == "float32":
        return contextlib.nullcontext(), "float32"
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
    if dtype is None:
        raise NeuralPriorError(f"unknown precision {precision!r}; use float32, bfloat16, float16 or auto")
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache), precision
