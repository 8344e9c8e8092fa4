"""Measurement operators F: the forward model that maps a clean image to the observation.

Every operator is a differentiable ``torch.nn.Module`` acting on NCHW float tensors
in [0, 1]. Linear operators also provide ``adjoint``. Any differentiable callable
``F(x) -> y`` can be used in :func:`neuralprior.fit` instead of these classes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from torch import nn

from ._validation import NeuralPriorError, check_positive_int

__all__ = [
    "Operator", "Identity", "Mask", "Downsample", "Blur",
    "lanczos_kernel", "gaussian_kernel", "box_kernel", "motion_kernel", "adjoint_test",
]


class Operator(nn.Module):
    """Base class: ``forward`` is F, ``adjoint`` is F^T for linear operators."""

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of F(x) for an x of ``shape``."""
        return tuple(shape)

    def input_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the image x whose observation has ``shape`` (for allocation)."""
        return tuple(shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no adjoint")


class Identity(Operator):
    """F(x) = x: denoising, JPEG artefact removal, plain reconstruction."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y


class Mask(Operator):
    """F(x) = m * x: inpainting. ``mask`` is 1 for known pixels, 0 for missing ones.

    The mask has shape (H, W), (1, H, W), (C, H, W) or (N, C, H, W) and broadcasts
    over the image.
    """

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        if mask.ndim == 2:
            mask = mask[None, None]
        elif mask.ndim == 3:
            mask = mask[None]
        if mask.ndim != 4:
            raise NeuralPriorError(f"mask must be 2-D to 4-D, got shape {tuple(mask.shape)}")
        self.register_buffer("mask", (mask > 0.5).to(torch.float32))

    @property
    def known_fraction(self) -> float:
        return float(self.mask.mean())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(x.dtype)

    adjoint = forward


def lanczos_kernel(factor: int, support: int = 2) -> torch.Tensor:
    """1-D Lanczos kernel for downsampling by ``factor`` (phase 0.5, sum 1).

    Length ``2 * support * factor``; taps at distances (k + 0.5 - support*factor)/factor,
    the anti-aliasing filter used by the Deep Image Prior paper for super-resolution.
    """
    n = 2 * support * factor
    d = (torch.arange(n, dtype=torch.float64) + 0.5 - support * factor) / factor
    k = torch.sinc(d) * torch.sinc(d / support)
    return (k / k.sum()).to(torch.float32)


def gaussian_kernel(sigma: float, size: int | None = None) -> torch.Tensor:
    """2-D isotropic Gaussian kernel of standard deviation ``sigma`` pixels, sum 1."""
    if sigma <= 0:
        raise NeuralPriorError(f"Gaussian blur sigma must be positive, got {sigma}")
    size = size or 2 * math.ceil(3 * sigma) + 1
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return (k / k.sum()).to(torch.float32)


def box_kernel(size: int) -> torch.Tensor:
    """2-D box (uniform) kernel of ``size`` x ``size`` pixels."""
    size = check_positive_int(size, "box size")
    return torch.full((size, size), 1.0 / size**2)


def motion_kernel(length: float, angle: float = 0.0) -> torch.Tensor:
    """Linear motion blur of ``length`` pixels at ``angle`` degrees (0 = horizontal)."""
    if length < 1:
        raise NeuralPriorError(f"motion blur length must be >= 1 pixel, got {length}")
    size = int(math.ceil(length)) | 1
    c = (size - 1) / 2
    t = math.radians(angle)
    k = torch.zeros(size, size, dtype=torch.float64)
    steps = max(4 * size, 16)
    for s in torch.linspace(-(length - 1) / 2, (length - 1) / 2, steps).tolist():
        x, y = c + s * math.cos(t), c - s * math.sin(t)
        x0, y0 = math.floor(x), math.floor(y)
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            xi, yi = x0 + dx, y0 + dy
            if 0 <= xi < size and 0 <= yi < size:
                w = (1 - abs(x - xi)) * (1 - abs(y - yi))
                k[yi, xi] += max(w, 0.0)
    return (k / k.sum()).to(torch.float32)


class Downsample(Operator):
    """F(x) = (k * x) sampled every ``factor`` pixels: super-resolution.

    ``kernel="lanczos2"`` (the paper's), ``"lanczos3"``, ``"box"`` or ``"bicubic"``
    (PyTorch's antialiased bicubic). The image borders are replicated. An x of
    H x W maps to floor(H/factor) x floor(W/factor).
    """

    def __init__(self, factor: int, kernel: str = "lanczos2"):
        super().__init__()
        self.factor = check_positive_int(factor, "factor")
        self.kernel_name = kernel
        if kernel in ("lanczos2", "lanczos3"):
            k1 = lanczos_kernel(self.factor, support=int(kernel[-1]))
        elif kernel == "box":
            k1 = torch.full((self.factor,), 1.0 / self.factor)
        elif kernel == "bicubic":
            k1 = torch.ones(1)
        else:
            raise NeuralPriorError(f"unknown downsampling kernel {kernel!r}; use lanczos2, lanczos3, box or bicubic")
        self.register_buffer("k1", k1)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, kernel={self.kernel_name!r}"

    def output_shape(self, shape):
        *lead, h, w = shape
        return (*lead, h // self.factor, w // self.factor)

    def input_shape(self, shape):
        *lead, h, w = shape
        return (*lead, h * self.factor, w * self.factor)

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        """Separable filtering with replicated borders, then stride ``factor``."""
        f, n = self.factor, self.k1.numel()
        lo, hi = (n - f) // 2, (n - f) - (n - f) // 2
        c = x.shape[1]
        k = self.k1.to(x.dtype)
        x = nnf.pad(x, (lo, hi, lo, hi), mode="replicate")
        x = nnf.conv2d(x, k.view(1, 1, 1, n).expand(c, 1, 1, n), stride=(1, f), groups=c)
        return nnf.conv2d(x, k.view(1, 1, n, 1).expand(c, 1, n, 1), stride=(f, 1), groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return x
        if self.kernel_name == "bicubic":
            h, w = x.shape[-2:]
            return nnf.interpolate(x, size=(h // self.factor, w // self.factor), mode="bicubic",
                                   antialias=True, align_corners=False)
        h, w = x.shape[-2:]
        x = x[..., : h - h % self.factor, : w - w % self.factor]
        return self._filter(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Exact adjoint, by autograd of the linear map (cheap, always consistent)."""
        shape = self.input_shape(y.shape)
        with torch.enable_grad():
            x = torch.zeros(shape, dtype=y.dtype, device=y.device, requires_grad=True)
            (g,) = torch.autograd.grad(self.forward(x), x, grad_outputs=y)
        return g


class Blur(Operator):
    """F(x) = k * x: convolution with a 2-D ``kernel`` (same size output, reflected borders)."""

    def __init__(self, kernel: torch.Tensor):
        super().__init__()
        kernel = torch.as_tensor(kernel, dtype=torch.float32)
        if kernel.ndim != 2 or kernel.numel() == 0:
            raise NeuralPriorError(f"blur kernel must be a non-empty 2-D array, got shape {tuple(kernel.shape)}")
        if kernel.sum() <= 0:
            raise NeuralPriorError("blur kernel must have a positive sum")
        self.register_buffer("kernel", kernel / kernel.sum())

    def _pads(self):
        kh, kw = self.kernel.shape
        return ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.kernel.to(x.dtype).flip(0, 1)[None, None].expand(c, 1, *self.kernel.shape)
        mode = "reflect" if min(x.shape[-2:]) > max(self.kernel.shape) else "replicate"
        return nnf.conv2d(nnf.pad(x, self._pads(), mode=mode), k, groups=c)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = torch.zeros_like(y, requires_grad=True)
            (g,) = torch.autograd.grad(self.forward(x), x, grad_outputs=y)
        return g


def adjoint_test(op: Operator, x_shape: tuple[int, ...], generator: torch.Generator | None = None) -> float:
    """Relative error |<Ax, y> - <x, A^T y>| / |<Ax, y>| on random x, y (0 for an exact adjoint)."""
    x = torch.randn(x_shape, generator=generator, dtype=torch.float64)
    ax = op.double()(x)
    y = torch.randn(ax.shape, generator=generator, dtype=torch.float64)
    lhs = (ax * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    op.float()
    return float((lhs - rhs).abs() / lhs.abs().clamp_min(1e-12))
