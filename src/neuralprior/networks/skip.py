"""The Deep Image Prior hourglass ("skip") network, every knob per level."""
from __future__ import annotations

from dataclasses import dataclass, field, asdict

import torch
from torch import nn

from .._validation import NeuralPriorError
from .layers import Concat, block, conv, norm, upsample


def _per_level(value, depth: int, name: str) -> list:
    """Broadcast a scalar to ``depth`` levels, or check a list has ``depth`` entries."""
    if isinstance(value, (list, tuple)):
        if len(value) != depth:
            raise NeuralPriorError(f"{name} has {len(value)} entries, expected one per level ({depth})")
        return list(value)
    return [value] * depth


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
            inner = nn.Sequential(*layers)
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
