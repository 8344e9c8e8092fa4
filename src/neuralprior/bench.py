"""Benchmark harness: the paper's tables on the paper's own inputs, beside classical baselines.

A data folder laid out like the development set holds one sub-folder per suite:

- ``denoise-sigma25/NAME_GT.png`` + ``NAME_noisy.png``: RGB PSNR / SSIM against ``_GT``;
- ``inpaint-half/NAME_GT.png`` + ``NAME_masked.png``: missing pixels are exactly 0; PSNR on the whole image;
- ``sr-set5/NAME_GT.png``: HR = centre crop to multiples of 32, LR = PIL Lanczos downscale by 4 or 8;
  PSNR / SSIM on luma Y (BT.601 studio range) with 4 pixels shaved from every border.

Every method sees only the observation (baselines estimate the noise level themselves).
Published numbers come from ``anchors.csv`` in the data folder when present.
"""
from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ._validation import NeuralPriorError
from .io import atomic_path, load_image
from .metrics import estimate_noise_sigma, psnr, rgb_to_y, ssim

SUITES = {
    "denoise": ("denoise-sigma25", "denoise-sigma25"),
    "inpaint": ("inpaint-half", "inpaint-half"),
    "sr4": ("sr-set5", "sr-set5-x4"),
    "sr8": ("sr-set5", "sr-set5-x8"),
}


@dataclass
class Case:
    suite: str
    name: str
    observation: torch.Tensor            # what every method sees, (1, C, h, w) in [0, 1]
    truth: torch.Tensor | None           # ground truth, (1, C, H, W); None outside the benchmark
    mask: torch.Tensor | None = None     # inpainting: 1 = known
    factor: int | None = None            # super-resolution


@dataclass
class Row:
    suite: str
    image: str
    method: str
    psnr: float
    ssim: float
    seconds: float
    iterations: int | None = None
    stopped_at: int | None = None
    stop_reason: str = ""
    extra: dict = field(default_factory=dict)


def _tensor(im: Image.Image) -> torch.Tensor:
    a = np.asarray(im, dtype=np.float32) / 255
    return torch.from_numpy(a[..., None] if a.ndim == 2 else a).permute(2, 0, 1)[None].contiguous()


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).clamp(0, 1).double().numpy()


def _from_hwc(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a, dtype=np.float32)
    return torch.from_numpy(a[..., None] if a.ndim == 2 else a).permute(2, 0, 1)[None].clamp(0, 1).contiguous()


def load_suite(data: Path, suite: str, only: list[str] | None = None) -> list[Case]:
    """The cases of ``suite`` found in ``data`` (see the module docstring for the layout)."""
    folder = data / SUITES[suite][0]
    if not folder.is_dir():
        raise NeuralPriorError(f"{folder}: no such folder (suite {suite})")
    names = sorted(p.name[: -len("_GT.png")] for p in folder.glob("*_GT.png"))
    if only:
        names = [n for n in names if n in only]
    cases = []
    for n in names:
        if suite == "denoise":
            y, _ = load_image(folder / f"{n}_noisy.png")
            cases.append(Case(suite, n, y, load_image(folder / f"{n}_GT.png")[0]))
        elif suite == "inpaint":
            y, _ = load_image(folder / f"{n}_masked.png")
            mask = (y != 0).any(dim=1, keepdim=True).float()
            cases.append(Case(suite, n, y, load_image(folder / f"{n}_GT.png")[0], mask=mask))
        else:
            f = int(suite[2:])
            hr = Image.open(folder / f"{n}_GT.png").convert("RGB")
            w, h = hr.size
            W, H = w - w % 32, h - h % 32
            hr = hr.crop(((w - W) // 2, (h - H) // 2, (w - W) // 2 + W, (h - H) // 2 + H))
            lr = hr.resize((W // f, H // f), Image.LANCZOS)
            cases.append(Case(suite, n, _tensor(lr), _tensor(hr), factor=f))
    if not cases:
        raise NeuralPriorError(f"{folder}: no images found for suite {suite}")
    return cases


def score(case: Case, x: torch.Tensor) -> tuple[float, float]:
    """(PSNR, SSIM) with the suite's protocol."""
    if case.factor:
        a, b = rgb_to_y(x.clamp(0, 1))[..., 4:-4, 4:-4], rgb_to_y(case.truth)[..., 4:-4, 4:-4]
        return psnr(a, b), ssim(a, b)
    return psnr(x, case.truth), ssim(x, case.truth)


# ---------------------------------------------------------------------------------- baselines

def _sigma(case: Case) -> float:
    return estimate_noise_sigma(case.observation, clipped=False)    # the Gaussian std BM3D's tables assume


def _cbm3d(case):
    import bm3d

    y = _hwc(case.observation)
    sigma = _sigma(case)
    out = bm3d.bm3d_rgb(y, sigma) if y.shape[-1] == 3 else bm3d.bm3d(y[..., 0], sigma)
    return _from_hwc(out)


def _nlm(case):
    from skimage.restoration import denoise_nl_means

    s = _sigma(case)
    return _from_hwc(denoise_nl_means(_hwc(case.observation), h=0.8 * s, sigma=s, fast_mode=True, patch_size=5,
                                      patch_distance=6, channel_axis=-1))


def _tv(case):
    from skimage.restoration import denoise_tv_chambolle

    return _from_hwc(denoise_tv_chambolle(_hwc(case.observation), weight=_sigma(case), channel_axis=-1))


def _biharmonic(case):
    from skimage.restoration import inpaint_biharmonic

    missing = case.mask[0, 0].numpy() == 0
    return _from_hwc(inpaint_biharmonic(_hwc(case.observation), missing, channel_axis=-1))


def _telea(case):
    import cv2

    img = (_hwc(case.observation) * 255).round().astype(np.uint8)
    missing = (case.mask[0, 0].numpy() == 0).astype(np.uint8)
    out = cv2.inpaint(img if img.shape[-1] == 3 else img[..., 0], missing, 3, cv2.INPAINT_TELEA)
    return _from_hwc(out.astype(np.float32) / 255)


def _resize(mode):
    def up(case):
        arr = (_hwc(case.observation) * 255).round().astype(np.uint8)
        im = Image.fromarray(arr if arr.shape[-1] == 3 else arr[..., 0])
        h, w = case.observation.shape[-2:]
        return _tensor(im.resize((w * case.factor, h * case.factor), mode))
    return up


def _optional(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def baselines(suite: str) -> dict[str, Callable[[Case], torch.Tensor]]:
    """Classical methods for ``suite``; optional ones only where their package is installed."""
    if suite == "denoise":
        b = {"NLM": _nlm, "TV": _tv}
        if _optional("bm3d"):
            b = {"CBM3D": _cbm3d, **b}
        return b
    if suite == "inpaint":
        b = {"biharmonic": _biharmonic}
        if _optional("cv2"):
            b["Telea"] = _telea
        return b
    return {"bicubic": _resize(Image.BICUBIC), "Lanczos": _resize(Image.LANCZOS)}


def classical_baseline(task: str, observation: torch.Tensor, *, mask: torch.Tensor | None = None,
                       factor: int | None = None) -> tuple[str, torch.Tensor] | None:
    """(name, image) of the benchmark's first classical method for ``task``, or None where it has none.

    denoise: CBM3D where the ``bm3d`` package is installed, else non-local means; inpaint:
    biharmonic; super-resolve: bicubic. Shape: ``observation`` (1, C, h, w) in [0, 1] with
    C = 1 or 3; ``mask`` (1, 1, h, w), 1 = known.
    """
    suite = {"denoise": "denoise", "inpaint": "inpaint", "super-resolve": f"sr{factor}"}.get(task)
    if suite is None:
        return None
    case = Case(suite, task, observation[:1].float(), None, mask=mask, factor=factor)
    name, method = next(iter(baselines(suite).items()))
    return name, method(case)


# ---------------------------------------------------------------------------------- runner

def run_dip(case: Case, *, preset: str, device: str, time_limit: float | None, iterations: int | None,
            seed: int = 0, restarts: int | None = None) -> tuple[torch.Tensor, dict]:
    from .tasks import restore

    task = {"denoise": "denoise", "inpaint": "inpaint"}.get(case.suite, "super-resolve")
    kw = {"num_iter": iterations} if iterations else {}
    r = restore(task, case.observation, mask=case.mask, factor=case.factor, preset=preset, device=device,
                time_limit=time_limit, seed=seed, restarts=restarts, **kw)
    return r.image, dict(iterations=r.iterations_run, stopped_at=r.stopped_at, stop_reason=r.reason,
                         seconds=r.seconds, device=r.device, precision=r.precision)


def run_bench(data: str | Path, suites: list[str], *, preset: str = "default", device: str = "auto",
              time_limit: float | None = 120.0, iterations: int | None = None, methods: list[str] | None = None,
              only: list[str] | None = None, restarts: int | None = None,
              log: Callable[[str], None] = print) -> list[Row]:
    """Run DIP (``preset``) and the baselines on every case of ``suites``; returns one Row per (image, method).

    ``restarts``: DIP fits per image, averaged (default: the preset's); ``time_limit`` is for all of them together."""
    rows: list[Row] = []
    for suite in suites:
        if suite not in SUITES:
            raise NeuralPriorError(f"unknown suite {suite!r}; use {', '.join(SUITES)}")
        for case in load_suite(Path(data), suite, only):
            todo: dict[str, Callable] = {}
            if not methods or "dip" in methods:
                todo[f"DIP ({preset})" if restarts is None else f"DIP ({preset}, {restarts} fits)"] = None
            for name, fn in baselines(suite).items():
                if not methods or name.lower() in [m.lower() for m in methods]:
                    todo[name] = fn
            for name, fn in todo.items():
                t0 = time.perf_counter()
                info: dict = {}
                if fn is None:
                    x, info = run_dip(case, preset=preset, device=device, time_limit=time_limit, iterations=iterations,
                                      restarts=restarts)
                else:
                    x = fn(case)
                seconds = info.get("seconds", time.perf_counter() - t0)
                p, s = score(case, x)
                rows.append(Row(suite, case.name, name, p, s, seconds, info.get("iterations"), info.get("stopped_at"),
                                info.get("stop_reason", ""), {k: info[k] for k in ("device", "precision") if k in info}))
                log(f"{suite} {case.name:10s} {name:16s} PSNR {p:6.2f}  SSIM {s:.4f}  {seconds:7.1f} s"
                    + (f"  {info['iterations']} it, returned {info['stopped_at']}" if info else ""))
            if suite in ("denoise", "inpaint"):
                p, s = score(case, case.observation)
                rows.append(Row(suite, case.name, "input", p, s, 0.0))
    return rows


def read_anchors(data: Path) -> dict[tuple[str, str, str], float]:
    path = Path(data) / "anchors.csv"
    if not path.is_file():
        return {}
    with open(path) as f:
        return {(r["task"], r["image"], r["method"]): float(r["value"]) for r in csv.DictReader(f)}


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def report(rows: list[Row], data: str | Path, out: str | Path, *, meta: dict) -> str:
    """Write results.md, results.csv and results.json to ``out``; return the markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    anchors = read_anchors(Path(data))
    md = [f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; {meta['date']}.", ""]
    for suite in dict.fromkeys(r.suite for r in rows):
        srows = [r for r in rows if r.suite == suite]
        images = list(dict.fromkeys(r.image for r in srows))
        methods = list(dict.fromkeys(r.method for r in srows))
        task = SUITES[suite][1]
        published = list(dict.fromkeys(m for (t, _, m) in anchors if t == task and m != "noisy input"))
        md += [f"## {suite}", "", "PSNR (dB) / SSIM of each method here; published PSNR from anchors.csv in italics.", ""]
        head = ["image", *methods, *[f"*{m}*" for m in published]]
        md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        cell = {(r.image, r.method): r for r in srows}
        for img in images + ["mean"]:
            vals = []
            for m in methods:
                if img == "mean":
                    ps = [cell[(i, m)].psnr for i in images if (i, m) in cell]
                    ss = [cell[(i, m)].ssim for i in images if (i, m) in cell]
                    vals.append(f"**{_mean(ps):.2f}** / {_mean(ss):.4f}")
                else:
                    r = cell.get((img, m))
                    vals.append(f"{r.psnr:.2f} / {r.ssim:.4f}" if r else "")
            for m in published:
                if img == "mean":
                    v = _mean([anchors.get((task, i, m)) for i in images])
                else:
                    v = anchors.get((task, img, m))
                vals.append("" if v is None or math.isnan(v) else f"*{v:.2f}*")
            md.append(f"| {img} | " + " | ".join(vals) + " |")
        dip = [r for r in srows if r.iterations is not None]
        if dip:
            md += ["", "| image | method | seconds | iterations | s/it | returned iteration | why it ended |",
                   "|---|---|---|---|---|---|---|"]
            for r in dip:
                md.append(f"| {r.image} | {r.method} | {r.seconds:.1f} | {r.iterations} | "
                          f"{r.seconds / max(r.iterations, 1):.3f} | {r.stopped_at} | {r.stop_reason} |")
        base = [r for r in srows if r.iterations is None and r.method != "input"]
        if base:
            md += ["", "Baseline seconds per image: " + ", ".join(
                f"{m} {_mean([r.seconds for r in base if r.method == m]):.1f}" for m in dict.fromkeys(r.method for r in base))]
        md.append("")
    text = "\n".join(md)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(text)
    with atomic_path(out / "results.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["suite", "image", "method", "psnr", "ssim", "seconds", "iterations", "stopped_at", "stop_reason"])
            for r in rows:
                w.writerow([r.suite, r.image, r.method, f"{r.psnr:.4f}", f"{r.ssim:.5f}", f"{r.seconds:.2f}",
                            r.iterations, r.stopped_at, r.stop_reason])
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps({"meta": meta, "rows": [r.__dict__ for r in rows]}, indent=1))
    return text


def machine_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, PyTorch {torch.__version__}"
