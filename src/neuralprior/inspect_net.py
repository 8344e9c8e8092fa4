"""Look inside: convolution arithmetic and a network's layers, shapes, parameters, FLOPs and receptive field."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ._validation import NeuralPriorError
from .latent import padded_size
from .networks.skip import set_fused


def conv_output_size(size: int, kernel: int, *, padding: int = 0, dilation: int = 1, stride: int = 1) -> int:
    """Output length of a convolution: floor((n + 2p - d (k - 1) - 1) / s) + 1."""
    for name, v, lo in (("size", size, 1), ("kernel", kernel, 1), ("dilation", dilation, 1), ("stride", stride, 1),
                        ("padding", padding, 0)):
        if v < lo:
            raise NeuralPriorError(f"{name} must be >= {lo}, got {v}")
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise NeuralPriorError(f"the kernel (extent {dilation * (kernel - 1) + 1}) is larger than the padded input "
                               f"({size + 2 * padding}): no output pixel")
    return out


def conv_inputs_of(index: int, kernel: int, *, padding: int = 0, dilation: int = 1, stride: int = 1) -> list[int]:
    """Positions in the (unpadded) input read by output position ``index``; negative or past the end = padding."""
    start = index * stride - padding
    return [start + t * dilation for t in range(kernel)]


@dataclass
class LayerInfo:
    name: str
    kind: str
    shape: tuple
    params: int
    flops: int


def summarize(net: nn.Module, size: tuple[int, int], *, also: tuple[type, ...] = (),
              device: str = "meta") -> tuple[list[LayerInfo], int, int]:
    """Per-layer output shapes, parameters and FLOPs for an output of ``size``.

    Layers are the leaf modules, plus containers of the types in ``also`` (e.g. ``Concat``,
    whose output is a new tensor). Returns (layers, total parameters, total FLOPs of one
    forward pass; a training step costs about 3x). The network (a copy) runs on the ``meta``
    device: no memory, no arithmetic, but its first use imports a second's worth of PyTorch;
    ``device="cpu"`` runs it for real (for small sizes).
    """
    h, w = padded_size(*size, getattr(net, "multiple", 1))
    lh, lw = net.latent_size(h, w) if hasattr(net, "latent_size") else (h, w)
    probe = set_fused(copy.deepcopy(net), False).to(device)    # layer by layer, as defined
    rows: list[LayerInfo] = []
    names = {m: n for n, m in probe.named_modules()}

    def hook(module, inputs, output):
        params = sum(p.numel() for p in module.parameters(recurse=False))
        flops = 0
        if isinstance(module, nn.Conv2d):
            flops = 2 * output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)):
            flops = 4 * output.numel()
        elif not isinstance(module, (nn.Identity,)):
            flops = output.numel()
        rows.append(LayerInfo(names[module], type(module).__name__, tuple(output.shape), params, flops))

    hooks = [m.register_forward_hook(hook) for m in probe.modules() if isinstance(m, also) or not list(m.children())]
    try:
        with torch.no_grad():
            probe(torch.zeros(1, net.in_channels, lh, lw, device=device))
    finally:
        for hk in hooks:
            hk.remove()
    return rows, sum(p.numel() for p in net.parameters()), sum(r.flops for r in rows)


def receptive_field(net: nn.Module, size: int = 256) -> tuple[int, int]:
    """Height and width of the input region that influences the centre output pixel (measured by a gradient).

    BatchNorm is put in evaluation mode (an affine map), otherwise its batch statistics would
    couple every pixel. The answer is capped by ``size``.
    """
    net = copy.deepcopy(net).eval()
    m = getattr(net, "multiple", 1)
    size = max(size, 2 * m)
    lh, lw = net.latent_size(size, size) if hasattr(net, "latent_size") else (size, size)
    z = torch.rand(1, net.in_channels, lh, lw, requires_grad=True)
    out = net(z)
    out[0, :, out.shape[-2] // 2, out.shape[-1] // 2].sum().backward()
    g = z.grad.abs().sum(dim=(0, 1))
    rows = torch.nonzero(g.sum(1)).flatten()
    cols = torch.nonzero(g.sum(0)).flatten()
    if rows.numel() == 0:
        return 0, 0
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def architecture_table(net: nn.Module, size: tuple[int, int]) -> str:
    """Markdown summary: one row per layer, then the totals and the receptive field."""
    rows, params, flops = summarize(net, size)
    lines = ["| layer | type | output shape | parameters | MFLOPs |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.kind} | {'x'.join(map(str, r.shape))} | {r.params:,} | {r.flops / 1e6:.1f} |")
    rf = receptive_field(net, size=min(256, max(size)))
    lines += ["", f"parameters: {params:,}",
              f"forward pass at {size[0]}x{size[1]}: {flops / 1e9:.2f} GFLOPs (a training step is about 3x)",
              f"receptive field of one output pixel: {rf[0]}x{rf[1]} input pixels (measured at up to 256x256)"]
    return "\n".join(lines)
