"""The fixed input code z, and padding images to the size a network needs."""
from __future__ import annotations

import torch


def make_latent(kind: str, channels: int, size: tuple[int, int], *, scale: float = 0.1,
                generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """The network input z of shape (1, channels, H, W).

    ``kind="noise"``: uniform noise U(0, scale), the paper's default (scale 0.1).
    ``kind="meshgrid"``: two channels holding the x and y coordinates in [0, 1].
    """
    h, w = size
    if kind == "noise":
        z = torch.rand((1, channels, h, w), generator=generator, dtype=torch.float32) * scale
    elif kind == "meshgrid":
        if channels != 2:
            raise ValueError(f"a meshgrid input has 2 channels, but the network expects {channels}")
        ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        z = torch.stack([xs, ys])[None]
    else:
        raise ValueError(f"unknown input kind {kind!r}; use noise or meshgrid")
    return z.to(device=device, dtype=dtype)


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Smallest size >= (height, width) whose sides are multiples of ``multiple``.

    Sides are at least ``2 * multiple`` so that the deepest level of a network is
    at least 2x2, which reflection padding needs.
    """
    def up(n):
        return max(-(-n // multiple) * multiple, 2 * multiple if multiple > 1 else 1)
    return up(height), up(width)


def pad_center(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x`` padded to ``height`` x ``width``, centred (reflected borders, replicated where too small).

    The inverse of :func:`crop_center`: ``crop_center(pad_center(x, H, W), h, w)`` is ``x``.
    """
    dh, dw = height - x.shape[-2], width - x.shape[-1]
    pads = (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)
    if dh == 0 and dw == 0:
        return x
    mode = "reflect" if max(pads[2:]) < x.shape[-2] and max(pads[:2]) < x.shape[-1] else "replicate"
    return torch.nn.functional.pad(x, pads, mode=mode)


def crop_center(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centred ``height`` x ``width`` window of an NCHW tensor (inverse of centred padding)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top:top + height, left:left + width]
