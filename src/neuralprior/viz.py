"""Figures (matplotlib, imported lazily): curves of a run with the stop and the oracle peak marked."""
from __future__ import annotations

import os
from pathlib import Path


def plot_report(report: dict, path: str | os.PathLike) -> Path:
    """Loss (log scale) and, when recorded, PSNR against iteration; marks the returned iterate and the PSNR peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = report["history"]
    loss = hist["loss"]
    psnr = hist.get("psnr")
    fig, axes = plt.subplots(1, 2 if psnr else 1, figsize=(11 if psnr else 6, 4), squeeze=False)
    ax = axes[0][0]
    ax.semilogy(range(len(loss)), loss, lw=0.8, label="loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("data term")
    stop = report.get("stopped_at")
    if stop is not None and stop >= 0:
        ax.axvline(stop, color="C3", ls="--", label=f"returned: iteration {stop}")
    ax.legend()
    if psnr:
        ax = axes[0][1]
        ax.plot(range(len(psnr)), psnr, lw=1, label="PSNR of the estimate")
        if hist.get("psnr_raw"):
            ax.plot(range(len(hist["psnr_raw"])), hist["psnr_raw"], lw=0.5, alpha=0.6, label="PSNR of the raw output")
        best = max(range(len(psnr)), key=psnr.__getitem__)
        ax.plot([best], [psnr[best]], "o", color="C2", label=f"oracle peak {psnr[best]:.2f} dB @ {best}")
        if stop is not None and 0 <= stop < len(psnr):
            ax.axvline(stop, color="C3", ls="--", label=f"automatic stop {psnr[stop]:.2f} dB @ {stop}")
        ax.set_xlabel("iteration")
        ax.set_ylabel("PSNR (dB)")
        ax.legend(loc="lower right")
    title = f"{report.get('task', '')} ({report.get('preset', '')})"
    fig.suptitle(title)
    return _save_figure(fig, path, dpi=100)


def _save_figure(fig, path, dpi: int) -> Path:
    """Write a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    from .io import atomic_path

    path = Path(path)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def draw_convolution(path, size: int, kernel: int, *, padding: int = 0, dilation: int = 1, stride: int = 1,
                     pixel: tuple[int, int] | None = None) -> Path:
    """PNG of a 2-D convolution: the padded input grid, the input pixels that feed one output pixel, the output grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .inspect_net import conv_inputs_of, conv_output_size

    out = conv_output_size(size, kernel, padding=padding, dilation=dilation, stride=stride)
    i, j = pixel if pixel is not None else (out // 2, out // 2)
    if not (0 <= i < out and 0 <= j < out):
        from ._validation import NeuralPriorError
        raise NeuralPriorError(f"output pixel ({i}, {j}) is outside the {out}x{out} output")
    rows = conv_inputs_of(i, kernel, padding=padding, dilation=dilation, stride=stride)
    cols = conv_inputs_of(j, kernel, padding=padding, dilation=dilation, stride=stride)
    full = size + 2 * padding
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 5), gridspec_kw={"width_ratios": [full, max(out, 1)]})
    for ax, n, title in ((a, full, f"input {size}x{size} + padding {padding}"), (b, out, f"output {out}x{out}")):
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
    for r in range(full):
        for c in range(full):
            pad = not (padding <= r < padding + size and padding <= c < padding + size)
            a.add_patch(Rectangle((c, r), 1, 1, facecolor="#dddddd" if pad else "white", edgecolor="#999999", lw=0.5))
    for r in rows:
        for c in cols:
            a.add_patch(Rectangle((c + padding, r + padding), 1, 1, facecolor="#e4572e", edgecolor="black", lw=0.8))
    for r in range(out):
        for c in range(out):
            hit = (r, c) == (i, j)
            b.add_patch(Rectangle((c, r), 1, 1, facecolor="#e4572e" if hit else "white", edgecolor="#999999", lw=0.5))
    fig.suptitle(f"kernel {kernel}, dilation {dilation}, stride {stride}, padding {padding}: "
                 f"output pixel ({i}, {j}) reads the red input pixels (grey = padding)")
    return _save_figure(fig, path, dpi=80)
