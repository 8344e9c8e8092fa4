"""The tasks users ask for: denoise, inpaint, super_resolve, remove_jpeg_artifacts, reconstruct.

Each picks a preset (network + :class:`FitConfig` + stopping rule), builds the
measurement operator and calls :func:`neuralprior.fit`.
"""
from __future__ import annotations

from dataclasses import fields, replace

import torch

from ._validation import NeuralPriorError, check_image, check_positive_int
from .fit import FitResult, fit
from .config import FitConfig
from .operators import Downsample, Identity, Mask
from .presets import get_preset

_FIT_FIELDS = {f.name for f in fields(FitConfig)}


def _operator(task: str, y: torch.Tensor, mask, factor):
    if task == "inpaint":
        if mask is None:
            raise NeuralPriorError("inpainting needs a mask (1 = known pixel, 0 = missing)")
        m = torch.as_tensor(mask, dtype=torch.float32)
        m = m[None, None] if m.ndim == 2 else (m[None] if m.ndim == 3 else m)
        if tuple(m.shape[-2:]) != tuple(y.shape[-2:]):
            raise NeuralPriorError(f"mask is {m.shape[-1]}x{m.shape[-2]} but the image is {y.shape[-1]}x{y.shape[-2]}")
        if not (m > 0.5).any():
            raise NeuralPriorError("mask has no known pixel")
        return Mask(m)
    if task == "super-resolve":
        return Downsample(check_positive_int(factor, "factor"))
    return Identity()


def restore(task: str, image: torch.Tensor, *, mask: torch.Tensor | None = None, factor: int | None = None,
            preset: str = "default", stop: str | int | None = None, seed: int | None = 0, device="auto",
            x_true: torch.Tensor | None = None, callback=None, callback_every: int = 1,
            time_limit: float | None = None, checkpoint=None, checkpoint_every: int = 100, resume=None,
            **overrides) -> FitResult:
    """Restore ``image`` (N, C, H, W) or (C, H, W) in [0, 1] for ``task`` with ``preset``.

    ``overrides`` are :class:`FitConfig` fields (``num_iter``, ``lr``, ``reg_noise_std``, ...).
    ``stop`` replaces the preset's stopping rule (``"auto"``, ``"none"`` or N iterations).
    ``x_true`` only logs PSNR; it never changes the result. ``checkpoint``/``resume``: see :func:`fit`.
    """
    unknown = set(overrides) - _FIT_FIELDS
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    y = check_image(image, "image").float()
    p = get_preset(task, preset, factor=factor)
    cfg = replace(p.fit, **overrides)
    op = _operator(task, y, mask, factor)
    if task == "inpaint":
        y = y * op.mask
    net = p.build_network(out_channels=y.shape[1], seed=seed)
    return fit(y, op, net=net, config=cfg, stop=p.stop if stop is None else stop, x_true=x_true, seed=seed,
               device=device, callback=callback, callback_every=callback_every, time_limit=time_limit,
               checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume)


def denoise(image: torch.Tensor, **kwargs) -> FitResult:
    """Remove noise from ``image``. See :func:`restore` for the options.

    Examples
    --------
    >>> import torch, neuralprior
    >>> noisy = torch.rand(1, 3, 32, 32)
    >>> neuralprior.denoise(noisy, num_iter=2, stop="none", device="cpu").image.shape
    torch.Size([1, 3, 32, 32])
    """
    return restore("denoise", image, **kwargs)


def inpaint(image: torch.Tensor, mask: torch.Tensor, **kwargs) -> FitResult:
    """Fill the pixels where ``mask`` is 0 (``mask`` is 1 on known pixels)."""
    return restore("inpaint", image, mask=mask, **kwargs)


def super_resolve(image: torch.Tensor, factor: int, **kwargs) -> FitResult:
    """Upscale ``image`` by an integer ``factor``; the result is ``factor`` times larger."""
    return restore("super-resolve", image, factor=factor, **kwargs)


def remove_jpeg_artifacts(image: torch.Tensor, **kwargs) -> FitResult:
    """Blind removal of JPEG compression artefacts."""
    return restore("jpeg", image, **kwargs)


def reconstruct(image: torch.Tensor, **kwargs) -> FitResult:
    """Fit the image itself (no degradation): watch the network learn it, then its noise."""
    return restore("reconstruct", image, **kwargs)
