"""Figures and animations of a run (matplotlib and PIL, imported lazily).

Curves with the stop and the oracle peak marked (:func:`plot_report`, :func:`plot_curves`),
images side by side with their PSNR (:func:`plot_comparison`), the output evolving over the
iterations as an animated GIF (:class:`FrameRecorder`, :func:`save_animation`) and the
convolution explorer (:func:`draw_convolution`). Images come in as (N, C, H, W) or (C, H, W)
tensors in [0, 1]; this module is where they become pixels.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as nnf

from ._validation import NeuralPriorError, check_image
from .io import atomic_path, check_writable_file, to_array

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pdf", ".svg")   # what matplotlib writes
ANIMATION_SUFFIXES = (".gif",)


def _pyplot():
    """matplotlib.pyplot with the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _check_suffix(path: str | os.PathLike, suffixes: tuple[str, ...], what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise NeuralPriorError(f"{path}: unknown {what} format {path.suffix or '(none)'}; use {', '.join(suffixes)}")
    return check_writable_file(path, what)


def check_figure_path(path: str | os.PathLike) -> Path:
    """Check before a long run that a figure can be written at ``path`` (format and folder)."""
    return _check_suffix(path, FIGURE_SUFFIXES, "figure")


def check_animation_path(path: str | os.PathLike) -> Path:
    """Check before a long run that an animation can be written at ``path`` (a .gif, in a writable folder)."""
    return _check_suffix(path, ANIMATION_SUFFIXES, "animation")


def plot_report(report: dict, path: str | os.PathLike) -> Path:
    """Loss (log scale) and, when recorded, PSNR against iteration; marks the returned iterate and the PSNR peak
    (after several fits averaged: their histories one after the other, each fit's stop and the average's PSNR)."""
    plt = _pyplot()
    hist = report["history"]
    loss = hist["loss"]
    psnr = hist.get("psnr")
    fig, axes = plt.subplots(1, 2 if psnr else 1, figsize=(11 if psnr else 6, 4), squeeze=False)
    ax = axes[0][0]
    ax.semilogy(range(len(loss)), loss, lw=0.8, label="loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("data term")
    stop = report.get("stopped_at")
    # several fits averaged (restore(restarts=N)): their histories one after the other, each fit's stop marked
    fits = ((report.get("config") or {}).get("restarts") or {}).get("fits") or []
    stops = [(f["start"] + f["stopped_at"], f"fit {k + 1}") for k, f in enumerate(fits)] if len(fits) > 1 else []
    if stop is not None and stop >= 0:
        ax.axvline(stop, color="C3", ls="--", label=f"returned: iteration {stop}")
    for i, (at, _) in enumerate(stops):
        ax.axvline(at, color="C3", ls="--", label="each fit's returned iteration" if i == 0 else None)
    for f in fits[1:] if stops else []:
        ax.axvline(f["start"], color="0.5", ls=":", lw=0.8)
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
        for at, name in stops:
            if 0 <= at < len(psnr):
                ax.axvline(at, color="C3", ls="--", label=f"{name}: automatic stop {psnr[at]:.2f} dB")
        if stops and report.get("psnr") is not None:
            ax.axhline(report["psnr"], color="C1", ls="-.", label=f"average of the fits {report['psnr']:.2f} dB")
        ax.set_xlabel("iteration")
        ax.set_ylabel("PSNR (dB)")
        ax.legend(loc="lower right")
    title = f"{report.get('task', '')} ({report.get('preset', '')})"
    fig.suptitle(title)
    return _save_figure(fig, path, dpi=100)


def _save_figure(fig, path, dpi: int) -> Path:
    """Write a matplotlib figure atomically and close it."""
    plt = _pyplot()
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
    from matplotlib.patches import Rectangle

    plt = _pyplot()

    from .inspect_net import conv_inputs_of, conv_output_size

    out = conv_output_size(size, kernel, padding=padding, dilation=dilation, stride=stride)
    i, j = pixel if pixel is not None else (out // 2, out // 2)
    if not (0 <= i < out and 0 <= j < out):
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


def plot_curves(curves: dict[str, Sequence[float]], path: str | os.PathLike, *, ylabel: str, title: str = "",
                log: bool = False, marks: dict[str, int] | None = None) -> Path:
    """Several per-iteration curves on one axis, e.g. the loss of runs at two learning rates.

    ``curves`` maps a legend label to its values (one per iteration); ``log`` uses a log
    scale; ``marks`` maps a label to an iteration drawn as a dashed vertical line.
    """
    if not curves:
        raise NeuralPriorError("plot_curves needs at least one curve")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, values in curves.items():
        (ax.semilogy if log else ax.plot)(range(len(values)), list(values), lw=1, label=label)
    for i, (label, iteration) in enumerate((marks or {}).items()):
        ax.axvline(iteration, color=f"C{i + len(curves)}", ls="--", label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save_figure(fig, path, dpi=100)


def plot_comparison(panels: Sequence[tuple[str, torch.Tensor]], path: str | os.PathLike, *,
                    title: str = "") -> Path:
    """Images side by side, each under its title: e.g. input | output | ground truth | baseline.

    Shape: every image (1, C, H, W) or (C, H, W) in [0, 1], C = 1 or 3; sizes may differ
    (a super-resolution input is shown at the panel size, without smoothing).
    """
    if not panels:
        raise NeuralPriorError("plot_comparison needs at least one (title, image) panel")
    images = [to_array(check_image(x, f"panel {label!r}")[:1]) for label, x in panels]
    h, w = max(a.shape[0] for a in images), max(a.shape[1] for a in images)
    inches = 3.5                                               # panel width
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(images), squeeze=False,
                             figsize=(inches * len(images), inches * h / w + (0.9 if title else 0.6)))
    for ax, (label, _), arr in zip(axes[0], panels, images):
        gray = arr.shape[-1] == 1
        ax.imshow(arr[..., 0] if gray else arr, cmap="gray" if gray else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path, dpi=int(min(300, max(100, w / inches))))   # about one dot per pixel


def comparison_panels(observation: torch.Tensor, output: torch.Tensor, *, truth: torch.Tensor | None = None,
                      baseline: tuple[str, torch.Tensor] | None = None, input_label: str = "input",
                      output_label: str = "DIP") -> list[tuple[str, torch.Tensor]]:
    """The panels of a run for :func:`plot_comparison`: input | output | ground truth | baseline.

    With ``truth`` each other panel's title gets its PSNR against it (the input's only when it
    has the truth's size: not for super-resolution). ``baseline`` is (name, image) of a
    classical method, see :func:`neuralprior.bench.classical_baseline`.
    """
    panels = [(input_label, observation), (output_label, output)]
    if baseline is not None:
        panels.append((f"{baseline[0]} (classical)", baseline[1]))
    if truth is None:
        return panels
    from .metrics import psnr

    truth = check_image(truth, "ground truth")
    labelled = []
    for label, x in panels:
        x = check_image(x, label)
        if tuple(x.shape[-3:]) == tuple(truth.shape[-3:]):
            label = f"{label}: {psnr(x.clamp(0, 1), truth):.2f} dB"
        labelled.append((label, x))
    return labelled[:2] + [("ground truth", truth)] + labelled[2:]


_LABEL_STRIP = 14                    # pixels above a frame for its label (PIL's default font is 10-11 px high)


def _frame_image(frame: torch.Tensor, label: str | None, min_width: int = 0):
    """A PIL image of one frame ((C, H, W) or (1, C, H, W), float in [0, 1] or uint8), with its label above.

    A frame narrower than ``min_width`` is enlarged by a whole factor (nearest neighbour) first.
    """
    from PIL import Image, ImageDraw

    if frame.ndim == 4:
        frame = frame[0]
    if frame.dtype == torch.uint8:
        arr = frame.permute(1, 2, 0).cpu().numpy()
    else:
        arr = to_array(check_image(frame, "frame"))
    im = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    if im.width < min_width:
        k = -(-min_width // im.width)
        im = im.resize((im.width * k, im.height * k), Image.NEAREST)
    if label:
        canvas = Image.new(im.mode, (im.width, im.height + _LABEL_STRIP), "white")
        canvas.paste(im, (0, _LABEL_STRIP))
        ImageDraw.Draw(canvas).text((2, 1), label, fill="black")
        im = canvas
    return im if im.mode == "L" else im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)


def _label_width(labels: Sequence[str]) -> int:
    """Pixels needed to draw the longest label in PIL's default font."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    return int(max(draw.textlength(label) for label in labels)) + 4 if labels else 0


def save_animation(frames: Sequence[torch.Tensor], path: str | os.PathLike, *, fps: float = 10.0,
                   labels: Sequence[str] | None = None, hold_last: float = 1.5) -> Path:
    """Write ``frames`` as an animated GIF (looping), atomically; ``labels`` are drawn above the frames.

    Shape: each frame (C, H, W) or (1, C, H, W), C = 1 or 3, float in [0, 1] or uint8, all the
    same size. The last frame stays ``hold_last`` seconds so the end result can be seen.
    """
    path = Path(path)
    if path.suffix.lower() not in ANIMATION_SUFFIXES:
        raise NeuralPriorError(f"{path}: unknown animation format {path.suffix or '(none)'}; use .gif")
    if not frames:
        raise NeuralPriorError("an animation needs at least one frame")
    if labels is not None and len(labels) != len(frames):
        raise NeuralPriorError(f"{len(labels)} labels for {len(frames)} frames")
    if not fps > 0:
        raise NeuralPriorError(f"fps must be positive, got {fps}")
    min_width = _label_width(labels or [])                     # small frames are enlarged so that labels fit
    images = [_frame_image(f, labels[i] if labels else None, min_width) for i, f in enumerate(frames)]
    if len({im.size for im in images}) > 1:
        raise NeuralPriorError("every frame of an animation must have the same size")
    step = max(20, round(1000 / fps))                  # GIF delays are in units of 10 ms; browsers clamp below 20
    durations = [step] * (len(images) - 1) + [max(step, round(1000 * hold_last))]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path


class FrameRecorder:
    """A :func:`neuralprior.fit` callback that keeps the estimate every ``every`` iterations, for an animation.

    Frames are kept in memory as uint8, downscaled so that their longer side is at most
    ``max_side``. With ``every=None`` the interval is chosen at the first call so that the run
    gives about ``frames`` frames. Beyond ``max_frames`` every other frame is dropped and the
    interval doubled, so memory stays bounded however long the run. Iterations are numbered
    from 0, as in reports and :func:`plot_report`.

    >>> import torch, neuralprior
    >>> from neuralprior import networks
    >>> rec = FrameRecorder(every=2)
    >>> net = networks.EncoderDecoder(width=8, skip_channels=2, in_channels=8)
    >>> result = neuralprior.fit(torch.rand(1, 3, 16, 16), net=net, config=neuralprior.FitConfig(num_iter=4),
    ...                          callback=rec, device="cpu")
    >>> rec.finish(result)
    >>> rec.labels
    ['iteration 0', 'iteration 2', 'iteration 3']
    """

    def __init__(self, every: int | None = None, *, frames: int = 50, max_side: int = 512, max_frames: int = 100):
        if every is not None and every < 1:
            raise NeuralPriorError(f"frame interval must be a positive number of iterations, got {every}")
        self.every, self.frames_wanted, self.max_side = every, frames, max_side
        self.max_frames = max(2, max_frames - max_frames % 2)   # even: halving keeps the latest frame
        self.frames: list[torch.Tensor] = []         # (C, h, w) uint8 on the CPU
        self.labels: list[str] = []
        self._last: tuple[torch.Tensor, str, int] | None = None    # the latest estimate seen, its stage, iteration
        self._recorded: tuple[str, int] | None = None              # (stage, iteration) of the latest frame

    @staticmethod
    def _label(stage: str, iteration: int) -> str:
        return f"iteration {iteration}" + (f" ({stage})" if stage else "")

    def __call__(self, state) -> None:
        if self.every is None:
            self.every = max(1, state.num_iter // self.frames_wanted)
        self._last = (state.estimate, state.stage, state.iteration)
        if state.iteration % self.every == 0:
            self.add(state.estimate, self._label(state.stage, state.iteration))
            self._recorded = (state.stage, state.iteration)

    def finish(self, result=None) -> None:
        """Add the last estimate seen, and ``result.image`` (a :class:`FitResult`) when it is an earlier one."""
        if self._last is not None and self._last[1:] != self._recorded:
            self.add(self._last[0], self._label(*self._last[1:]))
            self._recorded = self._last[1:]
        if result is None:
            return
        if result.stopped_at < 0:                   # several fits averaged: no one iterate
            self.add(result.image, f"returned: the average of {result.config['restarts']['averaged']} fits")
            return
        # after an inpainting held-out stop, the returned estimate is the stretch's (when there was one)
        stage = "stretch" if (result.config.get("held_out") or {}).get("stretch") else ""
        if (stage, result.stopped_at) != self._recorded:
            self.add(result.image, "returned: " + self._label(stage, result.stopped_at))

    def add(self, image: torch.Tensor, label: str) -> None:
        """Keep ``image`` ((1, C, H, W) in [0, 1]) as a frame under ``label``."""
        x = check_image(image, "frame")[:1].detach().float()
        h, w = x.shape[-2:]
        if max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            size = (max(2, round(h * scale)), max(2, round(w * scale)))
            x = nnf.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        self.frames.append((x[0].clamp(0, 1) * 255).round().to(torch.uint8).cpu())
        self.labels.append(label)
        if len(self.frames) > self.max_frames:       # bound the memory: keep every other frame from now on
            self.frames, self.labels = self.frames[::2], self.labels[::2]
            if self.every is not None:
                self.every *= 2

    def save(self, path: str | os.PathLike, *, fps: float = 10.0) -> Path:
        """Write the frames as an animated GIF, each labelled (call :meth:`finish` first to end on the result)."""
        return save_animation(self.frames, path, fps=fps, labels=self.labels)
