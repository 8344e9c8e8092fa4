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
    fig.tight_layout()
    from .io import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
