"""Command line: ``neuralprior TASK INPUT -o OUTPUT``; ``neuralprior --help`` lists everything."""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from ._validation import NeuralPriorError, check_betas, check_jpeg_quality, check_positive_int
from .fit import OPTIMIZERS, StopFitting
from .io import (ImageInfo, atomic_path, check_output_path, check_writable_file, jpeg_quality, load_image,
                 load_mask, save_image)
from .metrics import psnr, ssim
from .operators import parse_blur
from .presets import JPEG_STRONG, TASKS, get_preset, preset_table
from .stopping import make_stopping_rule

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message):
        raise NeuralPriorError(message)


# --------------------------------------------------------------------------- parser

def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not v >= 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def _betas(text: str) -> tuple[float, float]:
    try:
        return check_betas(text.split(","))
    except NeuralPriorError:
        raise argparse.ArgumentTypeError(f"expected two numbers in [0, 1) as B1,B2 (e.g. 0.8,0.99), got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        return check_positive_int(text, "value")
    except NeuralPriorError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


def _jpeg_quality(text: str) -> int:
    try:
        return check_jpeg_quality(text, "value")
    except NeuralPriorError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _stop_spec(text: str) -> str:
    if text == "held-out":          # denoising: restore() refuses it for other tasks
        return text
    try:
        make_stopping_rule(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run options")
    g.add_argument("--preset", default="default", help="preset name (see `neuralprior presets`); default: %(default)s")
    g.add_argument("--iterations", type=_positive_int, metavar="N",
                   help="maximum number of iterations (inpainting with --stop auto: of the fit with pixels held "
                        "out; the stretch on every known pixel comes after it, at most 200 more)")
    g.add_argument("--lr", type=_positive_float, help="learning rate")
    g.add_argument("--optimizer", choices=list(OPTIMIZERS),
                   help="optimiser of the network weights (default: the preset's, Adam)")
    g.add_argument("--betas", type=_betas, metavar="B1,B2",
                   help="the optimiser's decay rates of its gradient averages (default: the preset's)")
    g.add_argument("--loss", choices=["mse", "l1", "poisson", "sure"],
                   help="data term E: mse (Gaussian noise), l1 (outliers), poisson (photon counts), sure (Stein's "
                        "unbiased risk estimate, denoising from the noisy image); default: the preset's")
    g.add_argument("--noise-sigma", type=_positive_float, metavar="S",
                   help="std of the Gaussian noise on the 0-255 scale (e.g. 25), before clipping to 0-255, "
                        "for the SURE loss; default: estimated from the image")
    g.add_argument("--no-unclip", action="store_true",
                   help="SURE on an image with pixels at 0 or 255: return the fitted average as it is, with "
                        "clipping's bias near black and white (default: unclipped, assuming Gaussian noise of one "
                        "level clipped to 0-255)")
    g.add_argument("--sigma-p", type=_non_negative_float, metavar="S",
                   help="std of the perturbation added to the network input at each step, 0-1 scale (0 = none); "
                        "default: the preset's")
    g.add_argument("--tv", type=_non_negative_float, metavar="WEIGHT",
                   help="add WEIGHT x total variation (mean |gradient|) to the energy: R(x), edge-preserving")
    g.add_argument("--tikhonov", type=_non_negative_float, metavar="WEIGHT",
                   help="add WEIGHT x mean squared gradient to the energy: R(x), quadratic smoothness")
    g.add_argument("--stop", type=_stop_spec, metavar="auto|none|N|held-out",
                   help="stopping: auto (no-reference early stop), none (run all iterations), exactly N iterations, "
                        "or (denoising) held-out: 3%% of the pixels held out of the fit, the estimate at the "
                        "minimum of their error returned (the stop itself needs no noise level)")
    g.add_argument("--time-limit", type=_positive_float, metavar="SECONDS", help="stop after this many seconds")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    g.add_argument("--precision", choices=["auto", "float32", "bfloat16", "float16"],
                   help="arithmetic precision (default: the preset's)")
    g.add_argument("--no-cuda-graph", action="store_true",
                   help="on CUDA, run plain passes instead of replaying a recorded CUDA graph")
    g.add_argument("--gt", metavar="GROUND_TRUTH", help="ground truth: prints and records PSNR/SSIM, never used to fit")
    g.add_argument("--report", metavar="FILE.json", help="write a JSON report of the run")
    g.add_argument("--save-every", type=_positive_int, metavar="K",
                   help="save a snapshot every K iterations (iter_N.png; during the stretch on every known "
                        "pixel after an inpainting held-out stop: stretch_N.png)")
    g.add_argument("--snapshots", metavar="DIR", help="snapshot folder (default: OUTPUT_snapshots)")
    g.add_argument("--animation", metavar="FILE.gif",
                   help="animated GIF of the estimate over the iterations: a frame every --save-every K "
                        "iterations, else about 50 frames; ends on the returned image")
    g.add_argument("--compare", metavar="FIGURE.png",
                   help="figure: input | output | ground truth (--gt) | a classical baseline, with PSNRs "
                        "against the ground truth")
    g.add_argument("--checkpoint", metavar="FILE", help="save the whole state to FILE periodically and on Ctrl-C")
    g.add_argument("--checkpoint-every", type=_positive_int, default=100, metavar="K",
                   help="iterations between checkpoints (default: %(default)s)")
    g.add_argument("--resume", metavar="FILE", help="continue a run from a checkpoint (same input and options)")
    g.add_argument("--force", action="store_true",
                   help="allow OUTPUT to overwrite INPUT; in a batch, redo finished outputs")
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def _add_restarts(p: argparse.ArgumentParser, use: str = "save", seeds: str = "SEED, SEED+1") -> None:
    p.add_argument("--restarts", type=_positive_int, metavar="N",
                   help=f"fit N times from seeds {seeds}, ..., each with its own stop, and {use} the average "
                        "(N times the time; better where fits level off, as in inpainting); default: the "
                        "preset's (1)")


def _add_mri_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", nargs="?",
                   help="an image (its k-space is simulated and undersampled; PSNRs are printed against it) "
                        "or a .npy complex k-space array (H, W) with the zero frequency at the centre")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="reconstructed image file (with --phantom: a folder)")
    p.add_argument("--phantom", action="store_true",
                   help="demo: the Shepp-Logan phantom; writes truth.png, zero-filled.png, dip.png to OUTPUT")
    p.add_argument("--size", type=_positive_int, default=128, help="side of the phantom (default: %(default)s)")
    p.add_argument("--sampling", choices=["cartesian", "radial"], default="cartesian",
                   help="simulated k-space sampling: cartesian (random lines, centre kept) or radial spokes "
                        "(default: %(default)s)")
    p.add_argument("--acceleration", type=_positive_float, default=4.0, metavar="R",
                   help="simulated undersampling: about 1/R of k-space is measured (default: %(default)g)")
    p.add_argument("--mask", metavar="MASK",
                   help="k-space mask (.npy or image, non-zero = sampled, centred); default for .npy k-space: "
                        "its non-zero entries")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neuralprior", description="Restore images with an untrained network (Deep Image Prior).")
    parser.add_argument("--version", action="version", version=f"neuralprior {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    helps = {"denoise": "remove noise", "inpaint": "fill missing pixels", "super-resolve": "upscale by an integer factor",
             "jpeg": "remove JPEG compression artefacts", "reconstruct": "fit the image itself (no degradation)",
             "deblur": "remove a known blur", "mri": "compressed-sensing MRI: an image from undersampled k-space",
             "flash": "flash/no-flash: the no-flash photo with the flash photo's low noise"}
    for task in TASKS:
        p = sub.add_parser(task, help=helps[task], description=helps[task])
        if task == "mri":
            _add_mri_arguments(p)
            _add_restarts(p)
            _add_run_options(p)
            continue
        p.add_argument("input", metavar="INPUT",
                       help="image file (PNG, JPEG, TIFF, BMP), or a folder or a quoted glob for a batch")
        p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                       help="restored image file (a folder for a batch)")
        if task == "deblur":
            p.add_argument("--blur", required=True, metavar="SPEC",
                           help="the blur: gaussian:SIGMA, box:SIZE, motion:LENGTH[,ANGLE] (pixels, degrees), "
                                "or a kernel file (.npy or an image; normalised to sum 1)")
        if task == "jpeg":
            p.add_argument("--quality", type=_jpeg_quality, metavar="Q",
                           help=f"the JPEG quality (1 to 100) INPUT was compressed at; on strong artefacts "
                                f"({JPEG_STRONG['max_quality']} or less) the automatic stop watches for them "
                                f"differently (default: read from a JPEG file's quantisation table; none for "
                                f"other files)")
        if task == "flash":
            p.add_argument("--flash", required=True, metavar="FLASH",
                           help="the flash photo of the same scene, same size as INPUT (the no-flash photo)")
        _add_restarts(p)
        if task == "inpaint":
            p.add_argument("--mask", required=True, metavar="MASK",
                           help="mask image (non-zero = known pixel) or `zeros`: pixels that are 0 in every channel are missing")
        if task == "super-resolve":
            p.add_argument("--factor", required=True, metavar="F", help="integer upscaling factor")
            p.add_argument("--kernel", default="lanczos2", choices=["lanczos2", "lanczos3", "bicubic", "box"],
                           help="how INPUT was made from the sharp image: the downsampling kernel of the model "
                                "(default: %(default)s, the paper's; lanczos3 = Pillow's LANCZOS resize)")
        _add_run_options(p)
    d = sub.add_parser("demo", help="denoise a bundled photo and show the result")
    d.add_argument("-o", "--output", default="demo-output", metavar="DIR", help="output folder (default: %(default)s)")
    d.add_argument("--size", type=_positive_int, default=128, help="side of the demo image in pixels (default: %(default)s)")
    d.add_argument("--sigma", type=_positive_float, default=25.0, help="noise level on the 0..255 scale (default: %(default)s)")
    _add_run_options(d)
    b = sub.add_parser("bench", help="benchmark DIP and classical baselines on a data folder (the paper's tables)")
    b.add_argument("suites", nargs="*", metavar="SUITE", help="denoise, inpaint, sr4, sr8 (default: all found)")
    b.add_argument("--data", default="../shared/data", help="data folder (default: %(default)s)")
    b.add_argument("--out", default="bench-results", help="folder for results.md/.csv/.json (default: %(default)s)")
    b.add_argument("--preset", default="default", help="DIP preset (default: %(default)s)")
    b.add_argument("--time-limit", type=_positive_float, default=120.0, metavar="SECONDS",
                   help="bounded mode: DIP time per image (default: %(default)s)")
    b.add_argument("--full", action="store_true", help="full mode: no time limit (the preset's iterations; for a GPU)")
    b.add_argument("--iterations", type=_positive_int, metavar="N", help="maximum DIP iterations")
    b.add_argument("--device", default="auto")
    b.add_argument("--methods", nargs="+", metavar="M", help="only these methods (dip, CBM3D, NLM, TV, ...)")
    b.add_argument("--only", nargs="+", metavar="IMAGE", help="only these image names")
    _add_restarts(b, use="score", seeds="0, 1")
    c = sub.add_parser("conv", help="convolution explorer: output size and the input pixels one output pixel reads")
    c.add_argument("--size", type=_positive_int, default=7, help="input side in pixels (default: %(default)s)")
    c.add_argument("--kernel", type=_positive_int, default=3, help="kernel side (default: %(default)s)")
    c.add_argument("--padding", type=int, default=0, help="padding on each side (default: %(default)s)")
    c.add_argument("--dilation", type=_positive_int, default=1, help="dilation (default: %(default)s)")
    c.add_argument("--stride", type=_positive_int, default=1, help="stride (default: %(default)s)")
    c.add_argument("--pixel", type=int, nargs=2, metavar=("ROW", "COL"), help="output pixel (default: the centre)")
    c.add_argument("-o", "--output", metavar="PNG", help="draw the receptive field to this PNG")
    a = sub.add_parser("arch", help="a preset's network: layers, output shapes, parameters, FLOPs, receptive field")
    a.add_argument("task", nargs="?", default="denoise", help="task whose preset to show (default: %(default)s)")
    a.add_argument("--preset", default="default", help="preset name (default: %(default)s)")
    a.add_argument("--size", type=_positive_int, nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="image size (default: 256 256)")
    a.add_argument("--channels", type=_positive_int, default=3, help="image channels (default: %(default)s)")
    sub.add_parser("presets", help="list the presets and their values")
    pl = sub.add_parser("plot", help="plot loss and PSNR curves from a --report JSON file")
    pl.add_argument("report", metavar="REPORT.json")
    pl.add_argument("-o", "--output", required=True, metavar="PNG")
    return parser


# --------------------------------------------------------------------------- progress

class Progress:
    """One status line on a terminal (iteration, loss, PSNR, ETA); silent elsewhere."""

    def __init__(self, enabled: bool, stream=sys.stderr):
        self.enabled = enabled and stream.isatty()
        self.stream = stream

    def __call__(self, s) -> None:
        if not self.enabled:
            return
        done = s.iteration + 1
        eta = s.elapsed / done * (s.num_iter - done)
        # restore()'s stretch after a held-out stop restarts its numbering; so does each of several fits averaged
        stage = f"{s.stage} " if s.stage else ""
        text = f"\r{stage}it {done}/{s.num_iter}  loss {s.loss:.3e}"
        if s.psnr is not None:
            text += f"  PSNR {s.psnr:.2f} dB"
        text += f"  {s.elapsed:.0f} s  ETA <= {_clock(eta)}  "
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d}"


# --------------------------------------------------------------------------- helpers

def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")


def _check_json_path(path: str | None, what: str = "report") -> Path | None:
    return None if path is None else check_writable_file(path, what)


def _overrides(args) -> dict:
    o = {}
    if args.iterations is not None:
        o["num_iter"] = args.iterations
    if args.lr is not None:
        o["lr"] = args.lr
    if getattr(args, "optimizer", None) is not None:
        o["optimizer"] = args.optimizer
    if getattr(args, "betas", None) is not None:
        o["betas"] = args.betas
    if args.precision is not None:
        o["precision"] = args.precision
    if getattr(args, "no_cuda_graph", False):
        o["cuda_graph"] = False
    if getattr(args, "no_unclip", False):
        o["unclip"] = False
    for arg, name in (("loss", "loss"), ("sigma_p", "reg_noise_std"), ("tv", "tv_weight"),
                      ("tikhonov", "tikhonov_weight")):
        if getattr(args, arg, None) is not None:
            o[name] = getattr(args, arg)
    if getattr(args, "noise_sigma", None) is not None:
        o["noise_sigma"] = args.noise_sigma / 255
    return o


def _mask_from_zeros(x: torch.Tensor) -> torch.Tensor:
    m = (x != 0).any(dim=1, keepdim=True).float()
    if m.sum() == 0:
        raise NeuralPriorError("--mask zeros: every pixel of the input is 0, nothing is known")
    return m



# --------------------------------------------------------------------------- commands

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _batch_inputs(pattern: str) -> list[Path] | None:
    """The files of a batch (INPUT is a folder or a glob), or None for a single file."""
    path = Path(pattern)
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    elif any(c in pattern for c in "*?["):
        files = [Path(p) for p in sorted(glob.glob(pattern)) if Path(p).is_file()]
    else:
        return None
    if not files:
        raise NeuralPriorError(f"{pattern}: no image files found")
    return files


class _StopOnSignal:
    """First Ctrl-C / SIGTERM: finish the current iteration and stop cleanly. Second: stop at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)
        return False


@dataclass
class _SideFiles:
    """What a run writes besides its output, checked before the fit starts."""

    report: Path | None = None
    snapshots: Path | None = None           # folder
    animation: Path | None = None
    compare: Path | None = None


# in a batch these options name folders, holding one file per input: its name with this suffix
_PER_FILE = {"gt": None, "report": ".json", "animation": ".gif", "compare": ".png"}


def _single_paths(args) -> dict[str, str | None]:
    return {k: getattr(args, k) for k in _PER_FILE}


def _batch_paths(args, src: Path) -> dict[str, str | None]:
    return {k: str(Path(getattr(args, k)) / (src.name if suffix is None else src.stem + suffix))
            if getattr(args, k) else None for k, suffix in _PER_FILE.items()}


def _side_files(args, output: Path, paths: dict[str, str | None], sub: str | None = None) -> _SideFiles:
    """Check the report, checkpoint, animation and figure paths, then create the snapshot folder."""
    from .viz import check_animation_path, check_figure_path

    side = _SideFiles(report=_check_json_path(paths.get("report")))
    if args.checkpoint:
        _check_json_path(args.checkpoint, "checkpoint")
    if paths.get("animation"):
        side.animation = check_animation_path(paths["animation"])
    if paths.get("compare"):
        side.compare = check_figure_path(paths["compare"])
    if args.save_every:
        snap_dir = Path(args.snapshots) if args.snapshots else output.with_name(output.stem + "_snapshots")
        side.snapshots = snap_dir / sub if sub else snap_dir
        side.snapshots.mkdir(parents=True, exist_ok=True)
    return side


def _recorder(args, side: _SideFiles):
    """The frame recorder of --animation (frames every --save-every iterations, else about 50), or None."""
    if side.animation is None:
        return None
    from .viz import FrameRecorder

    return FrameRecorder(every=args.save_every)


def _callback(args, progress: Progress, stop_request: "_StopOnSignal", snap_dir: Path | None, info: ImageInfo,
              recorder=None):
    """Per-iteration hook of a CLI run: progress line, snapshots every --save-every, animation frames,
    clean stop on a signal."""
    def callback(state):
        progress(state)
        if snap_dir is not None and (state.iteration + 1) % args.save_every == 0:
            prefix = f"{state.stage}_" if state.stage else "iter_"     # the stretch and later fits do not overwrite
            save_image(snap_dir / f"{prefix}{state.iteration + 1:06d}.png", state.estimate, info)
        if recorder is not None:
            recorder(state)
        if stop_request.requested:
            raise StopFitting
    return callback


def _write_figures(side: _SideFiles, recorder, result, panels, title: str, quiet: bool) -> None:
    """After a run: the animation (ending on the returned image) and the comparison figure.

    ``panels`` is a function giving :func:`~neuralprior.viz.plot_comparison`'s panels, called
    only for --compare (a classical baseline may take a while).
    """
    if recorder is not None:
        recorder.finish(result)
        recorder.save(side.animation)
        if not quiet:
            print(f"animation: {side.animation} ({len(recorder.frames)} frames)")
    if side.compare is not None:
        from .viz import plot_comparison

        plot_comparison(panels(), side.compare, title=title)
        if not quiet:
            print(f"comparison: {side.compare}")


def _task_panels(task: str, image, result, *, gt=None, mask=None, factor=None, preset: str = "") -> list:
    """input | DIP | ground truth | the task's classical baseline (see bench.classical_baseline)."""
    from .bench import classical_baseline
    from .viz import comparison_panels

    shown = image * mask if mask is not None else image                   # missing pixels black
    return comparison_panels(shown, result.image, truth=gt, output_label=f"DIP ({preset})" if preset else "DIP",
                             baseline=classical_baseline(task, image, mask=mask, factor=factor))


def _run_task(args) -> int:
    task = args.command
    if task == "mri":
        return _run_mri(args)
    factor = check_positive_int(args.factor, "--factor") if task == "super-resolve" else None
    get_preset(task, args.preset, factor=factor)                     # unknown preset: error before any work
    if task == "deblur":
        parse_blur(args.blur)                                        # bad blur spec: error before any work
    files = _batch_inputs(args.input)
    if files is None:
        return _restore_file(args, Path(args.input), Path(args.output), _single_paths(args), factor)
    # batch: -o is a folder; finished outputs are skipped; a failing file does not stop the others
    if args.resume or args.checkpoint:
        raise NeuralPriorError("--checkpoint and --resume take a single INPUT, not a batch")
    out_dir = Path(args.output)
    if out_dir.suffix.lower() in IMAGE_SUFFIXES or out_dir.is_file():
        raise NeuralPriorError(f"{out_dir}: with several inputs, -o must be a folder")
    if not out_dir.parent.is_dir():
        raise NeuralPriorError(f"{out_dir}: parent folder {out_dir.parent} does not exist")
    if args.gt and not Path(args.gt).is_dir():
        raise NeuralPriorError(f"{args.gt}: with several inputs, --gt must be a folder of files with the same names")
    folders = {k: Path(getattr(args, k)) for k, suffix in _PER_FILE.items() if suffix and getattr(args, k)}
    for name, folder in folders.items():
        if folder.suffix.lower() == _PER_FILE[name] or folder.is_file():
            raise NeuralPriorError(f"{folder}: with several inputs, --{name} must be a folder "
                                   f"(one {_PER_FILE[name]} file per input)")
    out_dir.mkdir(exist_ok=True)
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for src in files:
        dst = out_dir / src.name
        if dst.exists() and not args.force:
            rows.append((src.name, "skipped (done)", "", "", ""))
            continue
        try:
            r = _restore_file(args, src, dst, _batch_paths(args, src), factor, batch=True)
        except Exception as e:              # one file's failure never stops the batch
            failed += 1
            msg = str(e) if isinstance(e, NeuralPriorError) else f"{src}: {type(e).__name__}: {e}"
            print(f"neuralprior: error: {msg.splitlines()[0] if msg else type(e).__name__}", file=sys.stderr)
            rows.append((src.name, "failed", "", "", ""))
            continue
        if r.get("interrupted"):
            rows.append((src.name, "interrupted", r["iterations_run"], f"{r['seconds']:.1f}", ""))
            _print_summary(rows, args.quiet)
            return EXIT_INTERRUPTED
        rows.append((src.name, "ok", r["iterations_run"], f"{r['seconds']:.1f}",
                     f"{r['psnr']:.2f}" if "psnr" in r else ""))
    _print_summary(rows, args.quiet)
    return EXIT_ERROR if failed else 0


def _print_summary(rows, quiet: bool) -> None:
    if quiet:
        return
    print("| file | status | iterations | seconds | PSNR |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


MILD_JPEG = 50      # from this quality on, the jpeg `default` preset was measured to return less than the input


def _jpeg_input_quality(args, src: Path) -> int | None:
    """The JPEG quality of ``src``: ``--quality``, else read from the file (None for a file that is no JPEG), with
    a one-line warning when it is so mild that restoring was measured to lose quality (docs/stopping.md: 0.07
    to 3.90 dB under the input at qualities 50 and 70)."""
    quality = args.quality or jpeg_quality(src)
    if quality is not None and quality >= MILD_JPEG:
        warnings.warn(f"{src}: JPEG quality about {quality}: on such mild artefacts the result was measured "
                      "0.1 to 3.9 dB under the input (qualities 50 and 70; see docs/stopping.md)")
    return quality


def _restore_file(args, src: Path, output: Path, paths: dict[str, str | None], factor: int | None,
                  batch: bool = False):
    """Restore one file; returns the report dict (batch) or the exit status (single file).

    ``paths``: where its ground truth, report, animation and comparison figure are (None: not asked for).
    """
    from .tasks import restore

    task = args.command
    preset = get_preset(task, args.preset, factor=factor)
    image, info = load_image(src)
    extra = {}
    if task == "jpeg":
        extra["quality"] = _jpeg_input_quality(args, src)
    mask = None
    if task == "inpaint":
        if args.mask == "zeros":
            mask = _mask_from_zeros(image)
        else:
            mask = load_mask(args.mask, shape=tuple(image.shape[-2:]))
    if task == "deblur":
        extra["kernel"] = parse_blur(args.blur)
    if task == "super-resolve":
        extra["kernel"] = args.kernel
    if task == "flash":
        flash, _ = load_image(args.flash)
        if tuple(flash.shape[-2:]) != tuple(image.shape[-2:]):
            raise NeuralPriorError(f"{args.flash}: the flash image is {flash.shape[-1]}x{flash.shape[-2]} but "
                                   f"{src} is {image.shape[-1]}x{image.shape[-2]}; they must be the same size")
        extra["flash"] = flash
    out_shape = tuple(image.shape[-2:]) if factor is None else (image.shape[-2] * factor, image.shape[-1] * factor)
    gt, gt_path = None, paths["gt"]
    if gt_path:
        gt, _ = load_image(gt_path)
        if tuple(gt.shape[-2:]) != out_shape:
            raise NeuralPriorError(f"{gt_path}: ground truth is {gt.shape[-1]}x{gt.shape[-2]}, "
                                   f"the result will be {out_shape[1]}x{out_shape[0]}")
        if gt.shape[1] != image.shape[1]:
            gt = gt.mean(1, keepdim=True) if image.shape[1] == 1 else gt.expand(-1, image.shape[1], -1, -1)
    output = check_output_path(output, input_path=src, force=args.force)
    side = _side_files(args, output, paths, src.stem if batch else None)
    recorder = _recorder(args, side)
    progress = Progress(not args.quiet)

    with _StopOnSignal() as stop_request:
        callback = _callback(args, progress, stop_request, side.snapshots,
                             ImageInfo(mode=info.mode, bit_depth=8, alpha=info.alpha), recorder)

        try:
            result = restore(task, image, mask=mask, factor=factor, preset=args.preset, stop=args.stop,
                             seed=args.seed, device=args.device, x_true=gt, callback=callback,
                             time_limit=args.time_limit, checkpoint=args.checkpoint,
                             checkpoint_every=args.checkpoint_every, resume=args.resume,
                             restarts=args.restarts, **extra, **_overrides(args))
        finally:
            progress.close()
        save_image(output, result.image, info)

    report = {
        "task": task, "preset": preset.name, "input": str(src), "output": str(output),
        "device": result.device, "precision": result.precision, "seed": result.seed,
        "iterations_run": result.iterations_run, "stopped_at": result.stopped_at, "stop_reason": result.reason,
        "interrupted": result.interrupted, "seconds": round(result.seconds, 3),
        "seconds_per_iteration": round(result.seconds / max(result.iterations_run, 1), 4),
        "factor": factor, **({"kernel": args.kernel} if task == "super-resolve" else {}),
        "network": {"kind": preset.network, **preset.network_args,      # z = the image: its channels
                    **({"in_channels": image.shape[1]} if result.config.get("input_kind") == "observation" else {})},
        "config": result.config, "stop": args.stop or preset.stop, "history": result.history, "version": __version__,
    }
    if gt is not None:
        best_psnr, best_it = result.oracle_best
        report.update(psnr=psnr(result.image, gt), ssim=ssim(result.image, gt),
                      oracle_best_psnr=best_psnr, oracle_best_iteration=best_it)
        if factor is None:
            report["input_psnr"] = psnr(image, gt)
    if side.report is not None:
        _write_json(side.report, report)
    _write_figures(side, recorder, result, lambda: _task_panels(task, image, result, gt=gt, mask=mask, factor=factor,
                                                                preset=preset.name),
                   f"{task}: {src.name}", args.quiet)
    if not args.quiet:
        state = "interrupted; best result so far" if result.interrupted else "restored"
        fits = result.config.get("restarts", {}).get("fits", [])
        print(f"{state}: {output} ({result.iterations_run} iterations, {result.seconds:.1f} s, "
              f"returned {_returned(result)}: {result.reason})")
        if gt is not None:
            line = f"PSNR {report['psnr']:.2f} dB  SSIM {report['ssim']:.4f}"
            if "input_psnr" in report:
                line += f"  (input {report['input_psnr']:.2f} dB)"
            print(line + f"  oracle best {best_psnr:.2f} dB at {_iteration_of(best_it, fits)}")
            if len(fits) > 1:
                print("each fit: " + ", ".join(f"{f['psnr']:.2f} dB" + ("" if f["averaged"] else " (left out)")
                                               for f in fits))
    if batch:
        return report
    return EXIT_INTERRUPTED if result.interrupted else 0


def _returned(result) -> str:
    """What a result is, in words: "iteration I", or "the average of N fits" after restarts."""
    if result.stopped_at < 0 and "restarts" in result.config:
        return f"the average of {result.config['restarts']['averaged']} fits"
    return f"iteration {result.stopped_at}"


def _iteration_of(index: int, fits: list[dict]) -> str:
    """An index of a report's history in words: "iteration I", or "iteration I of fit K" after restarts."""
    k = max((k for k, f in enumerate(fits) if f["start"] <= index), default=None)
    return f"iteration {index}" if k is None or len(fits) < 2 else f"iteration {index - fits[k]['start']} of fit {k + 1}"


def _load_npy(path: Path, what: str):
    import numpy as np

    if not path.is_file():
        raise NeuralPriorError(f"{path}: no such {what} file")
    try:
        return np.load(path, allow_pickle=False)
    except Exception:
        raise NeuralPriorError(f"{path}: not a readable .npy array") from None


def _load_kspace_mask(text: str) -> torch.Tensor:
    """A k-space mask from a .npy array or an image (non-zero = sampled), as (H, W)."""
    path = Path(text)
    if path.suffix.lower() != ".npy":
        return load_mask(path)[0, 0]
    arr = _load_npy(path, "mask")
    if arr.ndim != 2 or not (arr.dtype.kind in "biufc"):
        raise NeuralPriorError(f"{path}: a k-space mask must be a 2-D numeric array, got shape {arr.shape}")
    return torch.from_numpy((arr != 0).astype("float32"))


def _run_mri(args) -> int:
    """``neuralprior mri``: an image (simulated k-space), a .npy k-space, or the phantom demo."""
    import numpy as np

    from .io import ImageInfo
    from .tasks import _restart_count, mri

    _restart_count(get_preset("mri", args.preset), args.restarts, args.checkpoint, args.resume)  # before any work
    if args.phantom == (args.input is not None):
        raise NeuralPriorError("mri takes an INPUT (an image or a .npy k-space) or --phantom, not both"
                               if args.phantom else "mri needs an INPUT (an image or a .npy k-space) or --phantom")
    truth, info, src = None, ImageInfo(mode="L"), None
    if args.phantom:
        from skimage import data
        from skimage.transform import resize

        out_dir = Path(args.output)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise NeuralPriorError(f"{out_dir}: cannot create the output folder ({e.strerror})") from None
        phantom = resize(data.shepp_logan_phantom(), (args.size, args.size), anti_aliasing=True)
        truth = torch.from_numpy(phantom.astype(np.float32)).clamp(0, 1)[None, None]
        source, output = truth, check_output_path(out_dir / "dip.png", force=True)
    else:
        src = Path(args.input)
        if src.suffix.lower() == ".npy":
            source = _load_npy(src, "k-space")
            if not np.iscomplexobj(source) or source.ndim != 2:
                raise NeuralPriorError(f"{src}: k-space must be a complex 2-D array (H, W), got {source.dtype} "
                                       f"of shape {source.shape}")
        else:
            image, image_info = load_image(src)
            truth = image.mean(1, keepdim=True)                      # MRI images are one magnitude channel
            source = truth
            info = ImageInfo(mode="L", bit_depth=image_info.bit_depth)
        output = check_output_path(args.output, input_path=src, force=args.force)
    if args.gt:
        gt, _ = load_image(args.gt)
        truth = gt.mean(1, keepdim=True)
    mask = _load_kspace_mask(args.mask) if args.mask else None
    side = _side_files(args, output, _single_paths(args))
    recorder = _recorder(args, side)
    progress = Progress(not args.quiet)
    with _StopOnSignal() as stop_request:
        callback = _callback(args, progress, stop_request, side.snapshots, info, recorder)

        try:
            result = mri(source, mask=mask, sampling=args.sampling, acceleration=args.acceleration,
                         preset=args.preset, stop=args.stop, seed=args.seed, device=args.device, callback=callback,
                         time_limit=args.time_limit, checkpoint=args.checkpoint,
                         checkpoint_every=args.checkpoint_every, resume=args.resume, restarts=args.restarts,
                         **_overrides(args))
        finally:
            progress.close()
    save_image(output, result.image, info)
    if args.phantom:
        save_image(output.with_name("zero-filled.png"), result.zero_filled, info)
        save_image(output.with_name("truth.png"), truth, info)
    report = {
        "task": "mri", "preset": args.preset, "input": "phantom" if args.phantom else str(src), "output": str(output),
        "sampling": "mask file" if args.mask else args.sampling, "sampled_fraction": float(result.mask.mean()),
        "kspace_scale": result.scale, "device": result.device, "precision": result.precision, "seed": result.seed,
        "iterations_run": result.iterations_run, "stopped_at": result.stopped_at, "stop_reason": result.reason,
        "interrupted": result.interrupted, "seconds": round(result.seconds, 3), "config": result.config,
        "history": result.history, "version": __version__,
    }
    if truth is not None:
        if tuple(truth.shape[-2:]) != tuple(result.image.shape[-2:]):
            raise NeuralPriorError(f"{args.gt}: ground truth is {truth.shape[-1]}x{truth.shape[-2]}, "
                                   f"the result is {result.image.shape[-1]}x{result.image.shape[-2]}")
        report.update(psnr=psnr(result.image, truth), ssim=ssim(result.image, truth),
                      zero_filled_psnr=psnr(result.zero_filled, truth), zero_filled_ssim=ssim(result.zero_filled, truth))
    if side.report is not None:
        _write_json(side.report, report)
    _write_figures(side, recorder, result, lambda: _mri_panels(result, truth, args.preset),
                   f"mri: {'phantom' if args.phantom else src.name}", args.quiet)
    if not args.quiet:
        state = "interrupted; best result so far" if result.interrupted else "reconstructed"
        print(f"{state}: {output} ({report['sampled_fraction']:.1%} of k-space, {result.iterations_run} iterations, "
              f"{result.seconds:.1f} s, returned {_returned(result)}: {result.reason})")
        if truth is not None:
            print(f"PSNR zero-filled {report['zero_filled_psnr']:.2f} dB  DIP {report['psnr']:.2f} dB  "
                  f"(SSIM {report['zero_filled_ssim']:.4f} -> {report['ssim']:.4f})")
        if args.phantom:
            print(f"wrote {output.parent}/truth.png, zero-filled.png, dip.png")
    return EXIT_INTERRUPTED if result.interrupted else 0


def _mri_panels(result, truth, preset: str) -> list:
    """zero-filled inverse FFT (the classical reconstruction) | DIP | ground truth."""
    from .viz import comparison_panels

    return comparison_panels(result.zero_filled, result.image, truth=truth, input_label="zero-filled",
                             output_label=f"DIP ({preset})")


def _run_demo(args) -> int:
    import numpy as np
    from PIL import Image, ImageDraw
    from skimage import data

    from .tasks import denoise

    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NeuralPriorError(f"{out}: cannot create the output folder ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise NeuralPriorError(f"{out}: output folder is not writable")
    get_preset("denoise", args.preset)
    side = _side_files(args, out / "restored.png", {**_single_paths(args), "gt": None, "report": None})
    recorder = _recorder(args, side)
    photo = Image.fromarray(data.astronaut()).resize((args.size, args.size), Image.LANCZOS)
    clean = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    gen = torch.Generator().manual_seed(1234)
    noisy = (clean + args.sigma / 255 * torch.randn(clean.shape, generator=gen)).clamp(0, 1)
    noisy = torch.round(noisy * 255) / 255                            # what an 8-bit file holds
    if not args.quiet:
        print(f"demo: astronaut (scikit-image) at {args.size}x{args.size}, Gaussian noise sigma {args.sigma:g}/255")
    progress = Progress(not args.quiet)
    with _StopOnSignal() as stop_request:
        callback = _callback(args, progress, stop_request, side.snapshots, ImageInfo(), recorder)
        try:
            result = denoise(noisy, preset=args.preset, stop=args.stop, seed=args.seed, device=args.device,
                             x_true=clean, callback=callback, time_limit=args.time_limit,
                             checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, resume=args.resume,
                             **_overrides(args))
        finally:
            progress.close()
    p_noisy, p_out = psnr(noisy, clean), psnr(result.image, clean)
    for name, img in (("clean", clean), ("noisy", noisy), ("restored", result.image)):
        save_image(out / f"{name}.png", img)
    tiles = [(noisy, f"noisy {p_noisy:.2f} dB"), (result.image, f"restored {p_out:.2f} dB"), (clean, "clean")]
    h, w = clean.shape[-2:]
    canvas = Image.new("RGB", (3 * w + 20, h + 24), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, label) in enumerate(tiles):
        arr = (img[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        canvas.paste(Image.fromarray(arr), (i * (w + 10), 24))
        draw.text((i * (w + 10) + 4, 5), label, fill="black")
    with atomic_path(out / "side_by_side.png") as tmp:
        canvas.save(tmp)
    _write_json(out / "report.json", {
        "task": "denoise", "preset": args.preset, "device": result.device, "precision": result.precision,
        "iterations_run": result.iterations_run, "stopped_at": result.stopped_at, "stop_reason": result.reason,
        "seconds": round(result.seconds, 3), "input_psnr": p_noisy, "psnr": p_out, "ssim": ssim(result.image, clean),
        "oracle_best_psnr": result.oracle_best[0], "oracle_best_iteration": result.oracle_best[1],
        "history": result.history})
    _write_figures(side, recorder, result, lambda: _task_panels("denoise", noisy, result, gt=clean, preset=args.preset),
                   f"demo: astronaut, sigma {args.sigma:g}/255", args.quiet)
    if not args.quiet:
        print(f"PSNR before: {p_noisy:.2f} dB  after: {p_out:.2f} dB  (+{p_out - p_noisy:.2f} dB, "
              f"{result.iterations_run} iterations, {result.seconds:.1f} s on {result.device})")
        print(f"wrote {out}/noisy.png, restored.png, clean.png, side_by_side.png, report.json")
    return EXIT_INTERRUPTED if result.interrupted else 0


def _run_plot(args) -> int:
    from .viz import check_figure_path, plot_report

    path = Path(args.report)
    if not path.is_file():
        raise NeuralPriorError(f"{path}: no such report file")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NeuralPriorError(f"{path}: not a JSON report") from None
    if not isinstance(report, dict) or not report.get("history", {}).get("loss"):
        raise NeuralPriorError(f"{path}: report has no history (write it with --report)")
    plot_report(report, check_figure_path(args.output))
    return 0


def _run_bench(args, argv) -> int:
    import datetime

    from .bench import SUITES, machine_description, report, run_bench

    data = Path(args.data)
    if not data.is_dir():
        raise NeuralPriorError(f"{data}: no such data folder")
    suites = args.suites or [s for s, (folder, _) in SUITES.items() if (data / folder).is_dir()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise NeuralPriorError(f"unknown suite {unknown[0]!r}; use {', '.join(SUITES)}")
    if not suites:
        raise NeuralPriorError(f"{data}: none of the suite folders ({', '.join(f for f, _ in SUITES.values())}) found")
    limit = None if args.full else args.time_limit
    rows = run_bench(data, suites, preset=args.preset, device=args.device, time_limit=limit, iterations=args.iterations,
                     methods=args.methods, only=args.only, restarts=args.restarts, log=print)
    meta = {"command": "neuralprior " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine_description(str(rows[0].extra.get("device", args.device)) if rows else args.device),
            "date": datetime.date.today().isoformat(), "preset": args.preset, "time_limit": limit,
            "restarts": args.restarts}
    print(report(rows, data, args.out, meta=meta))
    return 0


def _run_conv(args) -> int:
    from .inspect_net import conv_inputs_of, conv_output_size

    if args.padding < 0:
        raise NeuralPriorError(f"--padding must be >= 0, got {args.padding}")
    kw = dict(padding=args.padding, dilation=args.dilation, stride=args.stride)
    n = conv_output_size(args.size, args.kernel, **kw)
    i, j = args.pixel if args.pixel else (n // 2, n // 2)
    if not (0 <= i < n and 0 <= j < n):
        raise NeuralPriorError(f"--pixel {i} {j} is outside the {n}x{n} output")
    rows, cols = conv_inputs_of(i, args.kernel, **kw), conv_inputs_of(j, args.kernel, **kw)
    print(f"input {args.size}x{args.size}, kernel {args.kernel}, padding {args.padding}, dilation {args.dilation}, "
          f"stride {args.stride} -> output {n}x{n}")
    print(f"output pixel ({i}, {j}) reads input rows {rows} and columns {cols} "
          f"(outside 0..{args.size - 1} = padding); extent {args.dilation * (args.kernel - 1) + 1} pixels")
    if args.output:
        from .viz import check_figure_path, draw_convolution

        check_figure_path(args.output)
        draw_convolution(args.output, args.size, args.kernel, pixel=(i, j), **kw)
        print(f"wrote {args.output}")
    return 0


def _run_arch(args) -> int:
    from .inspect_net import architecture_table

    if args.task not in TASKS:
        raise NeuralPriorError(f"unknown task {args.task!r}; use one of {', '.join(TASKS)}")
    preset = get_preset(args.task, args.preset)
    net = preset.build_network(out_channels=args.channels)
    print(f"{args.task} / {args.preset}: {type(net).__name__}({', '.join(f'{k}={v}' for k, v in preset.network_args.items())})")
    print(architecture_table(net, tuple(args.size)))
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"neuralprior: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``neuralprior`` command; returns the exit status."""
    parser = build_parser()
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _main(parser, argv)


def _main(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_ERROR
        if args.command == "presets":
            print(preset_table())
            return 0
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "plot":
            return _run_plot(args)
        if args.command == "bench":
            return _run_bench(args, argv)
        if args.command == "conv":
            return _run_conv(args)
        if args.command == "arch":
            return _run_arch(args)
        return _run_task(args)
    except NeuralPriorError as e:
        print(f"neuralprior: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("neuralprior: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("neuralprior: error: out of memory; try a smaller image or a lighter preset", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # never a traceback for users; NEURALPRIOR_DEBUG=1 shows it
        if os.environ.get("NEURALPRIOR_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"neuralprior: error: {type(e).__name__}: {msg} (set NEURALPRIOR_DEBUG=1 for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
