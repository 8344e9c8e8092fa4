"""How much memory a fit needs, estimated before it starts, and how much the device has."""
from __future__ import annotations

import math
import os

import torch
from torch import nn

from ._validation import NeuralPriorError
from .latent import padded_size
from .networks.layers import Concat


def _free_bytes(device: torch.device) -> int | None:
    """Memory available for a new allocation on ``device`` (None when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_fit_bytes(net: nn.Module, img_shape: tuple[int, int], *, window: int = 0, passes: int = 1) -> int:
    """Peak memory of one training step of ``net`` producing an image of ``img_shape`` (H, W), in bytes.

    The network runs once to add up the activations every layer keeps for the backward pass: for
    a network with a size ``multiple`` m, for real on a 2m x 2m image (a few milliseconds), scaled
    by the area; otherwise on the ``meta`` device (no memory or arithmetic, but a second of imports
    at its first use); weights, gradients and the
    two Adam moments come on top, and ``window`` stored estimates for the stopping rule.
    ``passes``: forward passes kept for one backward (2 for the SURE loss).
    The estimate is for float32 activations, an upper bound for bfloat16.
    """
    from .inspect_net import summarize

    m = getattr(net, "multiple", 1)
    h, w = padded_size(*img_shape, m)
    lh, lw = net.latent_size(h, w) if hasattr(net, "latent_size") else (h, w)
    if m > 1:
        # a fully convolutional network whose sizes are multiples of m: every layer's output grows with
        # the image's area, so a real run at 2m x 2m, scaled, counts exactly what the meta device would
        layers, _, _ = summarize(net, (2 * m, 2 * m), also=(Concat,), device="cpu")
        scale = h * w / (2 * m) ** 2
    else:
        layers, _, _ = summarize(net, img_shape, also=(Concat,))
        scale = 1
    total = sum(math.prod(layer.shape) for layer in layers) * 4 * scale
    params = sum(p.numel() for p in net.parameters()) * 4
    image = getattr(net, "out_channels", 3) * img_shape[0] * img_shape[1] * 4
    # activations + their gradients in flight during backward; weights, grads, 2 Adam moments,
    # the guard's copy; a few full-size images (observation, output, estimate, best)
    return int(1.6 * passes * total + 5 * params + 6 * image + 4 * net.in_channels * lh * lw * 4 + window * min(image, 3 * 128 * 128 * 4))


def check_memory(net: nn.Module, img_shape: tuple[int, int], device: torch.device, *, window: int = 0,
                 passes: int = 1, headroom: float = 0.9) -> int:
    """Raise a clear error when the fit would not fit in ``device``'s free memory; return the estimate."""
    try:
        need = estimate_fit_bytes(net, img_shape, window=window, passes=passes)
    except Exception:          # a custom network the meta device cannot run: no estimate, no refusal
        return 0
    free = _free_bytes(device)
    if free is not None and need > headroom * free:
        gib = 2**30
        raise NeuralPriorError(
            f"a {img_shape[1]}x{img_shape[0]} image needs about {need / gib:.1f} GiB with this network, "
            f"but only {free / gib:.1f} GiB is free on {device}; use a smaller image or a lighter preset")
    return need
