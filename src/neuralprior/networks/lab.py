"""The teaching network: a small encoder-decoder with exactly two skip connections."""
from __future__ import annotations

import torch
from torch import nn

from .layers import block, conv, upsample


class EncoderDecoder(nn.Module):
    """Three-level encoder-decoder with two skip connections, readable top to bottom.

    ::

        z --enc1--> e1 (H/2) --enc2--> e2 (H/4) --enc3--> e3 (H/8)
                     |                  |                   |
                   skip1              skip2                 up
                     |                  |                   |
        out <-head- dec1 <-up- dec2 <-[s1, up]    dec3 <-[s2, up(e3)]

    ``skips`` chooses which of the two skip connections exist (for the lab
    experiment on their effect); ``width`` sets the channels of every level.
    """

    def __init__(self, in_channels: int = 32, out_channels: int = 3, width: int = 64,
                 skip_channels: int = 8, skips: tuple[bool, bool] = (True, True),
                 act: str = "LeakyReLU", norm: str = "batch", pad: str = "reflection",
                 up: str = "bilinear"):
        super().__init__()
        kw = dict(act=act, norm_name=norm, pad=pad)
        s1 = skip_channels if skips[0] else 0
        s2 = skip_channels if skips[1] else 0
        self.enc1 = nn.Sequential(*block(in_channels, width, 3, stride=2, **kw), *block(width, width, 3, **kw))
        self.enc2 = nn.Sequential(*block(width, width, 3, stride=2, **kw), *block(width, width, 3, **kw))
        self.enc3 = nn.Sequential(*block(width, width, 3, stride=2, **kw), *block(width, width, 3, **kw))
        self.skip1 = nn.Sequential(*block(width, s1, 1, **kw)) if s1 else None
        self.skip2 = nn.Sequential(*block(width, s2, 1, **kw)) if s2 else None
        self.dec3 = nn.Sequential(*block(width + s2, width, 3, **kw))
        self.dec2 = nn.Sequential(*block(width + s1, width, 3, **kw))
        self.dec1 = nn.Sequential(*block(width, width, 3, **kw))
        self.up = upsample(up)
        self.head = nn.Sequential(conv(width, out_channels, 1, pad=pad), nn.Sigmoid())
        self.in_channels, self.out_channels, self.multiple = in_channels, out_channels, 8

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(z)                       # H/2
        e2 = self.enc2(e1)                      # H/4
        e3 = self.enc3(e2)                      # H/8, the bottleneck
        d = self.up(e3)                         # H/4
        if self.skip2 is not None:              # skip connection 2, at H/4
            d = torch.cat([self.skip2(e2), d], dim=1)
        d = self.up(self.dec3(d))               # H/2
        if self.skip1 is not None:              # skip connection 1, at H/2
            d = torch.cat([self.skip1(e1), d], dim=1)
        d = self.up(self.dec2(d))               # H
        return self.head(self.dec1(d))
