"""Measurement operators F: the forward model that maps a clean image to the observation.

Every operator is a differentiable ``torch.nn.Module`` acting on NCHW float tensors
in [0, 1]. Linear operators also provide ``adjoint``. Any differentiable callable
``F(x) -> y`` can be used in :func:`neuralprior.fit` instead of these classes.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as nnf
from torch import nn

from ._validation import NeuralPriorError, check_positive_int

__all__ = [
    "Operator", "Identity", "Mask", "Downsample", "Blur", "MRI", "KSpaceMask",
    "lanczos_kernel", "gaussian_kernel", "box_kernel", "motion_kernel", "parse_blur",
    "cartesian_mask", "radial_mask", "adjoint_test",
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
    """1-D Lanczos kernel for downsampling by ``factor`` (sum 1), the anti-aliasing filter used by the Deep
    Image Prior paper for super-resolution.

    Its taps sit at the high-resolution pixels around the centre of a low-resolution pixel, which is
    where image resizers (Pillow, Matlab) put it: ``factor * i + (factor - 1) / 2``. For an even factor
    that centre falls between two pixels: length ``2 * support * factor``, taps at distances
    (k + 0.5 - support*factor)/factor (the paper's phase 0.5). For an odd factor it is a pixel: length
    ``2 * support * factor + 1``, taps at (k - support*factor)/factor (the two end taps are 0).
    """
    odd = factor % 2
    n = 2 * support * factor + odd
    d = (torch.arange(n, dtype=torch.float64) + 0.5 * (1 - odd) - support * factor) / factor
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


BLUR_SPECS = "gaussian:SIGMA, box:SIZE, motion:LENGTH[,ANGLE], or a kernel file (.npy or an image)"


def parse_blur(spec: str | os.PathLike) -> torch.Tensor:
    """The 2-D blur kernel (sum 1) named by ``spec``.

    ``"gaussian:2.0"`` (standard deviation in pixels), ``"box:5"`` (side in pixels),
    ``"motion:9,30"`` (length in pixels, angle in degrees, default 0 = horizontal), or the
    path of a kernel file: a 2-D ``.npy`` array or a grayscale/colour image (colour is averaged
    over the channels). Every kernel is normalised to sum 1. A bad spec raises a one-line
    :class:`NeuralPriorError`.

    >>> parse_blur("box:3").shape
    torch.Size([3, 3])
    """
    text = os.fspath(spec).strip()
    name, sep, args = text.partition(":")
    kind = name.strip().lower()
    if sep and kind in ("gaussian", "box", "motion"):
        try:
            values = [float(v) for v in args.split(",")] if args.strip() else []
        except ValueError:
            raise NeuralPriorError(f"blur {text!r}: {args!r} is not a number; use {BLUR_SPECS}") from None
        if not values or not all(math.isfinite(v) for v in values):
            raise NeuralPriorError(f"blur {text!r}: give a finite number after '{kind}:'; use {BLUR_SPECS}")
        expected = {"gaussian": (1,), "box": (1,), "motion": (1, 2)}[kind]
        if len(values) not in expected:
            raise NeuralPriorError(f"blur {text!r}: {kind} takes {' or '.join(map(str, expected))} number(s), "
                                   f"got {len(values)}")
        if kind == "gaussian":
            if values[0] > 100:
                raise NeuralPriorError(f"blur {text!r}: sigma {values[0]:g} is too large (at most 100 pixels)")
            return gaussian_kernel(values[0])
        if kind == "box":
            if values[0] > 201:
                raise NeuralPriorError(f"blur {text!r}: box size {values[0]:g} is too large (at most 201 pixels)")
            return box_kernel(values[0])
        if values[0] > 201:
            raise NeuralPriorError(f"blur {text!r}: motion length {values[0]:g} is too large (at most 201 pixels)")
        return motion_kernel(*values)
    return _kernel_file(text)


def _kernel_file(text: str) -> torch.Tensor:
    """A user kernel from a ``.npy`` array or an image file, normalised to sum 1."""
    import numpy as np

    path = Path(text)
    if not path.is_file():
        hint = "unknown blur kind" if ":" in text else "no such kernel file"
        raise NeuralPriorError(f"blur {text!r}: {hint}; use {BLUR_SPECS}")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception:
            raise NeuralPriorError(f"{path}: not a readable .npy array") from None
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise NeuralPriorError(f"{path}: a blur kernel must be a real 2-D array, got shape {arr.shape} "
                                   f"of {arr.dtype}")
        k = torch.from_numpy(arr.astype(np.float64))
    else:
        from .io import load_image

        image, _ = load_image(path)
        k = image[0].double().mean(0)
    if k.numel() == 0 or not bool(torch.isfinite(k).all()) or bool((k < 0).any()) or float(k.sum()) <= 0:
        raise NeuralPriorError(f"{path}: a blur kernel needs finite, non-negative values with a positive sum")
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


class MRI(Operator):
    """F(x) = M ⊙ FFT2(x): undersampled k-space of a real image (compressed-sensing MRI).

    The FFT is orthonormal (``norm="ortho"``). With ``centered=True`` (the default) k-space
    is laid out as displayed, the zero frequency at (H // 2, W // 2) (``fftshift`` of the
    FFT); the ``mask`` (H, W), 1 = sampled, uses the same layout. The complex result is
    returned as a real tensor: an (N, C, H, W) image gives (N, 2C, H, W), the real parts
    stacked over the imaginary parts, so the usual data terms (MSE, L1) apply to it.

    The adjoint is the zero-filled inverse FFT, real part: real(IFFT2(M ⊙ (a + i b))).

    >>> op = MRI(cartesian_mask((32, 32), 4))
    >>> op(torch.rand(1, 1, 32, 32)).shape
    torch.Size([1, 2, 32, 32])
    """

    def __init__(self, mask: torch.Tensor, centered: bool = True):
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.ndim != 2:
            raise NeuralPriorError(f"k-space mask must be 2-D (H, W), got shape {tuple(mask.shape)}")
        if mask.is_complex():
            mask = mask.abs()
        mask = (mask > 0.5).to(torch.float32)
        if not bool(mask.any()):
            raise NeuralPriorError("k-space mask samples nothing (every entry is 0)")
        self.centered = centered
        self.register_buffer("mask", mask)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mask.shape)}, sampled={self.sampled_fraction:.3f}, centered={self.centered}"

    @property
    def sampled_fraction(self) -> float:
        """Fraction of k-space that is measured (1 / acceleration)."""
        return float(self.mask.mean())

    def output_shape(self, shape):
        *lead, c, h, w = shape
        return (*lead, 2 * c, h, w)

    def input_shape(self, shape):
        *lead, c, h, w = shape
        return (*lead, c // 2, h, w)

    def kspace(self, x: torch.Tensor) -> torch.Tensor:
        """The full (unmasked) complex k-space of ``x`` in this operator's layout."""
        k = torch.fft.fft2(x, norm="ortho")
        return torch.fft.fftshift(k, dim=(-2, -1)) if self.centered else k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kspace(x) * self.mask.to(x.dtype)
        return torch.cat([k.real, k.imag], dim=-3)

    def zero_filled(self, kspace: torch.Tensor) -> torch.Tensor:
        """Complex image IFFT2(M ⊙ k) of complex k-space ``kspace`` (same layout as the mask)."""
        k = kspace * self.mask.to(kspace.real.dtype)
        if self.centered:
            k = torch.fft.ifftshift(k, dim=(-2, -1))
        return torch.fft.ifft2(k, norm="ortho")

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        c = y.shape[-3] // 2
        return self.zero_filled(torch.complex(y[..., :c, :, :], y[..., c:, :, :])).real


KSpaceMask = MRI


def _check_acceleration(shape, acceleration) -> tuple[int, int, float]:
    if len(shape) != 2:
        raise NeuralPriorError(f"k-space mask shape must be (H, W), got {tuple(shape)}")
    h, w = (check_positive_int(s, "mask size") for s in shape)
    try:
        a = float(acceleration)
    except (TypeError, ValueError):
        a = float("nan")
    if not (math.isfinite(a) and a >= 1):
        raise NeuralPriorError(f"acceleration must be a number >= 1, got {acceleration!r}")
    return h, w, a


def cartesian_mask(shape: tuple[int, int], acceleration: float, center_fraction: float = 0.08,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Random Cartesian undersampling: full k-space lines, about 1/``acceleration`` of them.

    The phase-encoding direction is horizontal: each sampled line is a whole column of
    the (H, W) centred k-space. The ``center_fraction`` of columns around the zero
    frequency is always kept; the rest of the round(W / acceleration) lines are drawn
    uniformly at random with ``generator``.
    """
    h, w, a = _check_acceleration(shape, acceleration)
    if not 0 <= center_fraction <= 1:
        raise NeuralPriorError(f"center_fraction must be in [0, 1], got {center_fraction}")
    n_lines = max(1, round(w / a))
    n_center = min(n_lines, max(1, round(w * center_fraction)))
    start = w // 2 - n_center // 2
    cols = torch.zeros(w, dtype=torch.bool)
    cols[start:start + n_center] = True
    others = torch.nonzero(~cols).flatten()
    pick = others[torch.randperm(others.numel(), generator=generator)[: n_lines - n_center]]
    cols[pick] = True
    return cols[None, :].expand(h, w).to(torch.float32).contiguous()


def _spokes(h: int, w: int, n: int) -> torch.Tensor:
    """``n`` equally spaced lines through the centre (H // 2, W // 2), rasterised."""
    m = torch.zeros(h, w, dtype=torch.bool)
    r = math.hypot(h, w) / 2
    t = torch.arange(-r, r + 0.25, 0.25, dtype=torch.float64)
    for theta in (math.pi * i / n for i in range(n)):
        rows = torch.round(h // 2 + t * math.sin(theta)).long()
        cols = torch.round(w // 2 + t * math.cos(theta)).long()
        ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        m[rows[ok], cols[ok]] = True
    return m


def radial_mask(shape: tuple[int, int], acceleration: float) -> torch.Tensor:
    """Radial undersampling: equally spaced spokes through the centre of centred k-space.

    The number of spokes is the one whose sampled fraction is closest to 1/``acceleration``.
    """
    h, w, a = _check_acceleration(shape, acceleration)
    target = 1.0 / a
    lo, hi = 1, 4 * max(h, w)                 # smallest n with fraction >= target (fraction grows with n)
    while lo < hi:
        mid = (lo + hi) // 2
        if float(_spokes(h, w, mid).float().mean()) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = min((n for n in (lo - 1, lo) if n >= 1),
               key=lambda n: abs(float(_spokes(h, w, n).float().mean()) - target))
    return _spokes(h, w, best).to(torch.float32)


def adjoint_test(op: Operator, x_shape: tuple[int, ...], generator: torch.Generator | None = None) -> float:
    """Relative error |<Ax, y> - <x, A^T y>| / |<Ax, y>| on random x, y (0 for an exact adjoint)."""
    x = torch.randn(x_shape, generator=generator, dtype=torch.float64)
    ax = op.double()(x)
    y = torch.randn(ax.shape, generator=generator, dtype=torch.float64)
    lhs = (ax * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    op.float()
    return float((lhs - rhs).abs() / lhs.abs().clamp_min(1e-12))
