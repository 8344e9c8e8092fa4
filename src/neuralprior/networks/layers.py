"""Building blocks shared by the generators: padded convolutions, norms, activations, resampling."""
from __future__ import annotations

import torch
from torch import nn

from .._validation import NeuralPriorError

PAD_MODES = {"reflection": "reflect", "reflect": "reflect", "zero": "zeros", "zeros": "zeros",
             "replicate": "replicate", "circular": "circular"}


def activation(name: str) -> nn.Module:
    """``LeakyReLU`` (slope 0.2, the paper's), ``ReLU``, ``ELU``, ``Swish``/``SiLU``, ``GELU`` or ``none``."""
    key = name.lower()
    if key == "leakyrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if key == "relu":
        return nn.ReLU(inplace=True)
    if key == "elu":
        return nn.ELU(inplace=True)
    if key in ("swish", "silu"):
        return nn.SiLU(inplace=True)
    if key == "gelu":
        return nn.GELU()
    if key == "none":
        return nn.Identity()
    raise NeuralPriorError(f"unknown activation {name!r}; use LeakyReLU, ReLU, ELU, Swish, GELU or none")


def norm(name: str, channels: int) -> nn.Module:
    """``batch`` (the paper's BatchNorm, batch statistics always), ``instance``, ``group`` or ``none``."""
    key = name.lower()
    if key in ("batch", "bn", "batchnorm"):
        return nn.BatchNorm2d(channels)
    if key in ("instance", "in"):
        return nn.InstanceNorm2d(channels, affine=True)
    if key in ("group", "gn"):   # up to 8 groups; the group count must divide the channels (e.g. 4 + 128)
        return nn.GroupNorm(max(g for g in range(1, min(8, channels) + 1) if channels % g == 0), channels)
    if key == "none":
        return nn.Identity()
    raise NeuralPriorError(f"unknown normalisation {name!r}; use batch, instance, group or none")


class LanczosDown(nn.Module):
    """Fixed Lanczos-2 anti-aliased downsampling by ``factor`` (per channel)."""

    def __init__(self, channels: int, factor: int = 2):
        super().__init__()
        from ..operators import lanczos_kernel

        k = lanczos_kernel(factor)
        self.factor = factor
        self.register_buffer("weight", (k[:, None] * k[None, :]).expand(channels, 1, -1, -1).clone())

    def forward(self, x):
        n = self.weight.shape[-1]
        lo, hi = (n - self.factor) // 2, (n - self.factor) - (n - self.factor) // 2
        x = nn.functional.pad(x, (lo, hi, lo, hi), mode="replicate")
        return nn.functional.conv2d(x, self.weight.to(x.dtype), stride=self.factor, groups=x.shape[1])


def conv(cin: int, cout: int, kernel: int = 3, *, stride: int = 1, pad: str = "reflection",
         dilation: int = 1, downsample: str = "stride", bias: bool = True, separable: bool = False) -> nn.Module:
    """Convolution keeping H x W (``stride`` 1) or halving it (``stride`` 2, by ``downsample``).

    ``downsample``: ``stride`` (strided convolution, the paper's), ``avg``, ``max`` or ``lanczos``
    (stride-1 convolution followed by pooling / a fixed Lanczos filter). ``separable``: a
    ``kernel`` x ``kernel`` convolution becomes a depthwise one (one filter per input channel)
    followed by a 1x1 convolution mixing the channels (MobileNet's depthwise-separable convolution).
    """
    if pad not in PAD_MODES:
        raise NeuralPriorError(f"unknown padding {pad!r}; use reflection, zero, replicate or circular")
    padding = dilation * (kernel - 1) // 2
    # a convolution that pads nothing (1x1) takes zero padding: the same function, where PyTorch would
    # otherwise copy its input through a padding of 0 pixels, forward and backward
    mode = PAD_MODES[pad] if padding > 0 else "zeros"
    conv_stride = stride if downsample == "stride" else 1
    if separable and kernel > 1:
        layer = nn.Sequential(nn.Conv2d(cin, cin, kernel, stride=conv_stride, padding=padding, dilation=dilation,
                                        padding_mode=mode, groups=cin, bias=False),
                              nn.Conv2d(cin, cout, 1, bias=bias))
    else:
        layer = nn.Conv2d(cin, cout, kernel, stride=conv_stride, padding=padding, dilation=dilation,
                          padding_mode=mode, bias=bias)
    if stride == 1 or downsample == "stride":
        return layer
    if downsample == "avg":
        return nn.Sequential(layer, nn.AvgPool2d(stride))
    if downsample == "max":
        return nn.Sequential(layer, nn.MaxPool2d(stride))
    if downsample == "lanczos":
        return nn.Sequential(layer, LanczosDown(cout, stride))
    raise NeuralPriorError(f"unknown downsampling {downsample!r}; use stride, avg, max or lanczos")


def upsample(mode: str) -> nn.Module:
    if mode not in ("nearest", "bilinear", "bicubic"):
        raise NeuralPriorError(f"unknown upsampling {mode!r}; use nearest, bilinear or bicubic")
    return nn.Upsample(scale_factor=2, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))


def block(cin: int, cout: int, kernel: int, *, act: str, norm_name: str, **conv_kw) -> list[nn.Module]:
    """conv -> norm -> activation, as a list of layers."""
    return [conv(cin, cout, kernel, **conv_kw), norm(norm_name, cout), activation(act)]


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


class Concat(nn.Module):
    """Run branches on the same input and concatenate their outputs along channels."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)
