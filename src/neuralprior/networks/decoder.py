"""Deep Decoder (Heckel & Hand, ICLR 2019): an under-parameterised, convolution-free prior."""
from __future__ import annotations

import torch
from torch import nn

from .layers import activation, norm, upsample


class DeepDecoder(nn.Module):
    """Stack of [1x1 conv, x2 upsampling, ReLU, channel normalisation] layers.

    The input code z is ``2 ** num_layers`` times smaller than the image in each
    dimension. With the defaults (6 layers of 64 channels) the network has about
    25,000 parameters: fewer than the pixels of the image, so it cannot fit noise well.
    """

    def __init__(self, channels: int = 64, num_layers: int = 6, out_channels: int = 3,
                 up: str = "bilinear", act: str = "ReLU", norm_name: str = "batch"):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            layers += [nn.Conv2d(channels, channels, 1, bias=False), upsample(up), activation(act), norm(norm_name, channels)]
        layers += [nn.Conv2d(channels, channels, 1, bias=False), activation(act), norm(norm_name, channels),
                   nn.Conv2d(channels, out_channels, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        self.in_channels, self.out_channels = channels, out_channels
        self.multiple = 2**num_layers

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.multiple, width // self.multiple

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
