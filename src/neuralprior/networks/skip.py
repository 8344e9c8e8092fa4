"""The Deep Image Prior hourglass ("skip") network, every knob per level."""
from __future__ import annotations

from dataclasses import dataclass, field, asdict

import torch
from torch import nn
from torch.nn import functional as F

from .._validation import NeuralPriorError
from .layers import Concat, block, conv, norm, upsample


def _per_level(value, depth: int, name: str) -> list:
    """Broadcast a scalar to ``depth`` levels, or check a list has ``depth`` entries."""
    if isinstance(value, (list, tuple)):
        if len(value) != depth:
            raise NeuralPriorError(f"{name} has {len(value)} entries, expected one per level ({depth})")
        return list(value)
    return [value] * depth


def _nearest_conv_kernel(w: torch.Tensor) -> torch.Tensor:
    """The 4x4 kernel of the stride-2 transposed convolution equal to nearest 2x upsampling then ``w`` (3x3).

    Nearest upsampling repeats each pixel over a 2x2 block, so each output pixel of the 3x3
    convolution sees two input rows (and columns), the middle tap added to one of its neighbours:
    taps (w2, w1 + w2, w0 + w1, w0) along each axis. Returns the (in, out, 4, 4) weight of
    ``conv_transpose2d(..., stride=2, padding=1)``.
    """
    def taps(t: torch.Tensor, dim: int) -> torch.Tensor:
        a, b, c = t.unbind(dim)
        return torch.stack([c, b + c, a + b, a], dim)
    return taps(taps(w, 2), 3).transpose(0, 1)


# padding of a nearest-upsampled image = nearest upsampling of the image padded this way (by one pixel)
_UPSAMPLED_PAD = {"reflect": "replicate", "replicate": "replicate", "circular": "circular"}


def _norm_part(bn: nn.BatchNorm2d, x: torch.Tensor, part: slice, repeat: int = 1) -> torch.Tensor:
    """``bn`` applied to channels ``part`` of its input, ``x`` holding just those channels.

    ``repeat``: each pixel of ``x`` stands for ``repeat`` pixels of the input (nearest upsampling);
    the running variance is updated with the unbiased correction of that many pixels, as ``bn``
    would have done on the upsampled input.
    """
    stats = bn.running_mean is not None and (not bn.training or bn.track_running_stats)
    update = stats and bn.training and repeat > 1
    before = bn.running_var[part].clone() if update else None
    out = F.batch_norm(x, bn.running_mean[part] if stats else None, bn.running_var[part] if stats else None,
                       bn.weight[part] if bn.affine else None, bn.bias[part] if bn.affine else None,
                       bn.training or bn.running_mean is None, bn.momentum, bn.eps)
    if update:      # F.batch_norm used n / (n - 1) for n pixels; the upsampled input has N = repeat * n
        n = x.numel() // x.shape[1]
        big = repeat * n
        kept = (1 - bn.momentum) * before
        var = bn.running_var.data       # .data: the batch norm's backward keeps the buffer's version
        var[part] = kept + (var[part] - kept) * (big / (big - 1)) * ((n - 1) / n)
    return out


class _Level(nn.Sequential):
    """One level of :class:`SkipNet`: ``[skip || deeper (ending in 2x upsampling)] -> norm -> conv -> ...``.

    When the upsampling is nearest (2x) and the convolution after the concatenation a plain 3x3 one
    (any padding; read off the layers: ``fusable``), the level is computed without upsampling: batch normalisation
    commutes with nearest upsampling (each pixel is repeated four times: same mean and variance),
    and nearest upsampling followed by a 3x3 convolution is one stride-2 transposed 4x4
    convolution of the low-resolution channels (:func:`_nearest_conv_kernel`). Same function,
    same parameters and the same gradients (up to rounding), about half the arithmetic on
    the upsampled channels and no upsampled copy of them. ``fused = False`` computes it layer by
    layer (as listed; see :func:`set_fused`).
    """

    fused = True

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        branch, nrm, conv3 = layers[:3]
        deeper = branch.branches[-1] if isinstance(branch, Concat) else branch
        up = deeper[-1] if isinstance(deeper, nn.Sequential) else None
        self.fusable = (isinstance(up, nn.Upsample) and up.mode == "nearest" and up.scale_factor == 2
                        and isinstance(nrm, (nn.BatchNorm2d, nn.Identity)) and isinstance(conv3, nn.Conv2d)
                        and conv3.kernel_size == (3, 3) and conv3.stride == (1, 1) and conv3.dilation == (1, 1)
                        and conv3.padding == (1, 1) and conv3.groups == 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch, nrm, conv3 = self[0], self[1], self[2]
        if not (self.fused and self.fusable and (isinstance(nrm, nn.Identity) or nrm.momentum is not None)):
            return super().forward(x)
        skip_part, deeper = branch.branches if isinstance(branch, Concat) else (None, branch)
        s = skip_part(x) if skip_part is not None else None
        d = x
        for layer in list(deeper)[:-1]:      # everything but the final upsampling
            d = layer(d)
        ns = 0 if s is None else s.shape[1]
        if isinstance(nrm, nn.BatchNorm2d):
            if s is not None:
                s = _norm_part(nrm, s, slice(0, ns))
            d = _norm_part(nrm, d, slice(ns, None), repeat=4)
            if nrm.training and nrm.track_running_stats:
                nrm.num_batches_tracked.add_(1)
        w, mode, kernel = conv3.weight, conv3.padding_mode, _nearest_conv_kernel(conv3.weight[:, ns:])
        if mode == "zeros":     # zero padding inside the convolutions
            out = F.conv_transpose2d(d, kernel, conv3.bias, stride=2, padding=1)
            if s is not None:
                out = out + F.conv2d(s, w[:, :ns], padding=1)
        else:   # padding the upsampled channels = upsampling them padded (reflection: by replication)
            d = F.pad(d, (1, 1, 1, 1), mode=_UPSAMPLED_PAD[mode])
            out = F.conv_transpose2d(d, kernel, conv3.bias, stride=2, padding=3)
            if s is not None:
                out = out + F.conv2d(F.pad(s, (1, 1, 1, 1), mode=mode), w[:, :ns])
        for layer in list(self)[3:]:
            out = layer(out)
        return out


def set_fused(net: nn.Module, fused: bool) -> nn.Module:
    """Compute the fused levels of every :class:`SkipNet` in ``net`` fused (True, the default) or layer by layer."""
    for module in net.modules():
        if isinstance(module, _Level):
            module.fused = fused
    return net


@dataclass
class SkipConfig:
    """Architecture of :class:`SkipNet`. Scalars apply to every level; lists give one value per level.

    The defaults are the paper's network for denoising and super-resolution
    (2,217,831 parameters with 32 input and 3 output channels).
    """

    in_channels: int = 32            # depth of the input code z
    out_channels: int = 3            # image channels
    channels_down: list | int = field(default_factory=lambda: [128] * 5)  # encoder width per level
    channels_up: list | int = field(default_factory=lambda: [128] * 5)    # decoder width per level
    channels_skip: list | int = field(default_factory=lambda: [4] * 5)    # skip width per level, 0 = no skip
    kernel_down: list | int = 3      # encoder kernel size
    kernel_up: list | int = 3        # decoder kernel size
    kernel_skip: list | int = 1      # skip kernel size
    dilation: list | int = 1         # dilation of the encoder/decoder 3x3 convolutions
    pad: str = "reflection"          # reflection | zero | replicate | circular
    downsample: list | str = "stride"   # stride | avg | max | lanczos
    upsample: list | str = "bilinear"   # nearest | bilinear | bicubic
    act: str = "LeakyReLU"           # LeakyReLU (0.2) | ReLU | ELU | Swish | GELU | none
    norm: str = "batch"              # batch | instance | group | none
    need_1x1_up: bool = True         # extra 1x1 conv at the end of each decoder level
    sigmoid: bool = True             # squash the output to [0, 1]
    separable: list | bool = False   # depthwise-separable 3x3 convolutions (depthwise + 1x1) at each level:
                                     # about 6x fewer weights (docs/performance.md)

    @property
    def depth(self) -> int:
        return len(self.channels_down) if isinstance(self.channels_down, (list, tuple)) else 5

    def to_dict(self) -> dict:
        return asdict(self)


class SkipNet(nn.Module):
    """Encoder-decoder with per-level skip connections (Ulyanov et al. 2018, "skip").

    Level i: [skip_i: 1x1 conv] || [down_i: stride-2 conv, conv, level i+1, upsample]
    -> concat -> BN -> conv -> (1x1 conv). Input and output have the same H x W, which
    must be a multiple of ``2 ** depth`` (see :attr:`multiple`).
    """

    def __init__(self, config: SkipConfig | None = None, **overrides):
        super().__init__()
        cfg = config or SkipConfig()
        if overrides:
            cfg = SkipConfig(**{**cfg.to_dict(), **overrides})
        self.config = cfg
        d = cfg.depth
        if d < 1:
            raise NeuralPriorError("SkipNet needs at least one level")
        down = _per_level(cfg.channels_down, d, "channels_down")
        up = _per_level(cfg.channels_up, d, "channels_up")
        skip = _per_level(cfg.channels_skip, d, "channels_skip")
        kd = _per_level(cfg.kernel_down, d, "kernel_down")
        ku = _per_level(cfg.kernel_up, d, "kernel_up")
        ks = _per_level(cfg.kernel_skip, d, "kernel_skip")
        dil = _per_level(cfg.dilation, d, "dilation")
        dmode = _per_level(cfg.downsample, d, "downsample")
        umode = _per_level(cfg.upsample, d, "upsample")
        sep = _per_level(cfg.separable, d, "separable")
        kw = dict(act=cfg.act, norm_name=cfg.norm)

        inner: nn.Module | None = None
        for i in reversed(range(d)):           # build from the bottleneck outwards
            cin = cfg.in_channels if i == 0 else down[i - 1]
            kw["separable"] = sep[i]
            deeper = [*block(cin, down[i], kd[i], stride=2, pad=cfg.pad, downsample=dmode[i], **kw),
                      *block(down[i], down[i], kd[i], pad=cfg.pad, dilation=dil[i], **kw)]
            if inner is not None:
                deeper.append(inner)
            deeper.append(upsample(umode[i]))
            deeper = nn.Sequential(*deeper)
            k = up[i + 1] if i < d - 1 else down[i]
            if skip[i]:
                branch = Concat(nn.Sequential(*block(cin, skip[i], ks[i], pad=cfg.pad, **kw)), deeper)
            else:
                branch = deeper
            layers = [branch, norm(cfg.norm, skip[i] + k),
                      *block(skip[i] + k, up[i], ku[i], pad=cfg.pad, dilation=dil[i], **kw)]
            if cfg.need_1x1_up:
                layers += block(up[i], up[i], 1, pad=cfg.pad, **kw)
            inner = _Level(*layers)
        head = [conv(up[0], cfg.out_channels, 1, pad=cfg.pad)]
        if cfg.sigmoid:
            head.append(nn.Sigmoid())
        self.body = inner
        self.head = nn.Sequential(*head)
        self.in_channels = cfg.in_channels
        self.out_channels = cfg.out_channels
        self.multiple = 2**d

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of z for an output of ``height`` x ``width`` (multiples of :attr:`multiple`)."""
        return height, width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))
