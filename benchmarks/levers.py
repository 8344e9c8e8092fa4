"""Measure speed levers on one restoration problem: quality of the estimate against iterations and time.

    python benchmarks/levers.py NOISY GT [--crop 256] [--iterations 800] [--lever NAME ...] [--target 31.18]
    python benchmarks/levers.py --case inpaint-house --crop 256 --iterations 1000 --lever default --lever lr0.02
    python benchmarks/levers.py --case sr4-butterfly --iterations 1000 --lever default --target 26.19

The first form denoises NOISY against GT; ``--case`` takes a case of ``benchmarks/stopping.py``
(denoise-F16, inpaint-house, sr4-butterfly, synthetic-coffee-s50, ...) from ``--data``.
Each lever is a named change to the task's default preset (network, fitting settings or input);
"default" is the preset itself. Runs use no stopping rule, so the curves are comparable.
Prints a markdown table: s/it, quality after 100/200/... iterations (RGB PSNR; Y PSNR with 4
pixels shaved for super-resolution), the oracle peak and the time to reach --target (ground
truth is only measured, it never drives the fit).
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

import neuralprior as npr
from neuralprior.metrics import psnr
from neuralprior.operators import gaussian_kernel
from neuralprior.presets import WIDE_TOP_NET
from neuralprior.tasks import _configured_preset, _operator   # what restore() builds for a task
from stopping import cases, crop_case

WIDE_TOP = WIDE_TOP_NET      # 32 channels at full resolution, skip 8 (the `quality` presets' network)
PAPER_WIDTH = dict(channels_down=[128] * 5, channels_up=[128] * 5)
# the classic deep image prior: z ~ U(0, 0.1), MSE to the noisy image, sigma_p 1/30
NOISE_INPUT = dict(input_kind="noise", loss="mse", reg_noise_std=1 / 30)
# z = the noisy image, Stein's unbiased risk estimate as the loss (noise level estimated from the image)
SURE = dict(input_kind="observation", loss="sure", noise_sigma=None)
# name: (network overrides, FitConfig overrides), both on top of the task's default preset
LEVERS = {
    "denoise": {
        "default": ({}, {}),
        "noise-input": ({}, NOISE_INPUT),
        "noise-input-lr0.02": ({}, dict(NOISE_INPUT, lr=0.02)),
        "noise-input-paper-net": (PAPER_WIDTH, NOISE_INPUT),
        "noise-input-wide-top": (WIDE_TOP, NOISE_INPUT),
        "observation-mse": ({}, dict(input_kind="observation", loss="mse")),
        "sure-eps0.01-sp0": ({}, dict(SURE, sure_epsilon=0.01, reg_noise_std=0.0)),
        "sure-eps0.2-sp0": ({}, dict(SURE, sure_epsilon=0.2, reg_noise_std=0.0)),
        "sure-lr0.02": ({}, dict(SURE, lr=0.02)),
        "sure-float32": ({}, dict(SURE, precision="float32", channels_last=False)),
        "sure-skip16": (dict(channels_skip=16), SURE),
        "sigma-p-0.05": ({}, dict(reg_noise_std=0.05, reg_noise_per_variance=0.0)),
        "sure-batched": ({}, dict(sure_batched=True)),
        "ema0.98": ({}, dict(ema=0.98)),
        # the default network until 2026-11-27 (reflection padding, bilinear upsampling) and each half of it
        "reflection-bilinear": (dict(pad="reflection", upsample="bilinear"), {}),
        "reflection-pad": (dict(pad="reflection"), {}),
        "bilinear-up": (dict(upsample="bilinear"), {}),
        # half the channels at full resolution, where most of the cost is
        "top8": (dict(channels_down=[8, 32, 64, 128, 128], channels_up=[8, 32, 64, 128, 128]), {}),
    },
    # inpainting and super-resolution fit random z through their operator
    "other": {
        "default": ({}, {}),
        "lr0.005": ({}, dict(lr=0.005)),
        "lr0.02": ({}, dict(lr=0.02)),
        "lr0.05": ({}, dict(lr=0.05)),
        "no-ema": ({}, dict(ema=0.0)),
        "ema0.95": ({}, dict(ema=0.95)),
        "sigma-p0": ({}, dict(reg_noise_std=0.0)),
        "sigma-p0.01": ({}, dict(reg_noise_std=0.01)),
        "sigma-p0.06": ({}, dict(reg_noise_std=0.06)),
        "wide-top-sigma-p0.01": (WIDE_TOP, dict(reg_noise_std=0.01)),
        "wide-top": (WIDE_TOP, {}),
        "paper-width": (PAPER_WIDTH, {}),
        "float32": ({}, dict(precision="float32", channels_last=False)),
        "zero-pad": (dict(pad="zero"), {}),
        "zero-pad-nearest-up": (dict(pad="zero", upsample="nearest"), {}),
        # inpainting: the input z is the observation filled in (see fill_input), not random noise
        "fill-input": ({}, dict(input_kind="observation")),
        "fill-input-keep": ({}, dict(input_kind="observation")),
    },
}


def fill_input(y: torch.Tensor, mask: torch.Tensor, keep: bool = False, sigma: float = 1.5) -> torch.Tensor:
    """The masked image filled in by normalised convolution (Gaussian weights over the known pixels).

    The centre of the kernel is left out, so every pixel, known or missing, is predicted from its
    known neighbours alone: the input looks alike at both and the network cannot learn to copy it.
    ``keep=True`` keeps the known pixels as they are and fills only the missing ones.
    """
    k = gaussian_kernel(sigma, 2 * round(3 * sigma) + 1)
    k[k.shape[0] // 2, k.shape[1] // 2] = 0
    k = k[None, None].to(y)
    c, mask = y.shape[1], mask.expand_as(y)
    num = torch.nn.functional.conv2d(y * mask, k.expand(c, 1, -1, -1), padding=k.shape[-1] // 2, groups=c)
    den = torch.nn.functional.conv2d(mask, k.expand(c, 1, -1, -1), padding=k.shape[-1] // 2, groups=c)
    filled = num / den.clamp_min(1e-6)
    return torch.where(mask.bool(), y, filled) if keep else filled


def levers(task: str) -> dict:
    return LEVERS["denoise" if task == "denoise" else "other"]


def run(task: str, name: str, y, gt, operator, metric, iterations: int, seed: int):
    """Fit with lever ``name``; returns (quality per iteration, seconds per iteration).

    An iteration the divergence guard rolls back reports no estimate: it keeps the previous one's quality.
    """
    net_over, fit_over = levers(task)[name]
    preset = _configured_preset(task, "default", dict(fit_over, num_iter=iterations),
                                factor=getattr(operator, "factor", None))
    preset.network_args = {**preset.network_args, **net_over}
    net = preset.build_network(gt.shape[1], seed=seed)
    latent = None
    if name.startswith("fill-input"):
        if task != "inpaint":
            raise SystemExit(f"error: lever {name} is for inpainting cases")
        latent = fill_input(y, operator.mask, keep=name == "fill-input-keep")
    seen: dict[int, float] = {}
    t0 = time.perf_counter()
    r = npr.fit(y, operator, net=net, config=preset.fit, stop="none", seed=seed, latent=latent,
                callback=lambda s: seen.__setitem__(s.iteration, metric(s.estimate.cpu(), gt)))
    scores, last = [], float("nan")
    for it in range(r.iterations_run):
        last = seen.get(it, last)
        scores.append(last)
    return scores, (time.perf_counter() - t0) / r.iterations_run


def problem(a):
    """(task, observation, ground truth, operator, metric, label) from the command line."""
    if a.case:
        found = [c for c in cases(Path(a.data), None) if c[0] == a.case]
        if not found:
            raise SystemExit(f"error: no case {a.case!r} in {a.data}")
        case = found[0]
    else:
        if not (a.noisy and a.gt):
            raise SystemExit("error: give NOISY GT or --case NAME")
        case = (a.noisy, "denoise", npr.load_image(a.noisy)[0], npr.load_image(a.gt)[0], {}, psnr)
    name, task, y, gt, kw, metric = crop_case(case, a.crop)
    return task, y, gt, _operator(task, y, kw.get("mask"), kw.get("factor")), metric, name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("noisy", nargs="?")
    p.add_argument("gt", nargs="?")
    p.add_argument("--case", help="a case of benchmarks/stopping.py, read from --data")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--crop", type=int, default=256, help="centred square crop (0: whole image; not for SR)")
    p.add_argument("--iterations", type=int, default=800)
    p.add_argument("--lever", action="append")
    p.add_argument("--target", type=float, default=31.18)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    task, y, gt, op, metric, label = problem(a)
    bad = [n for n in a.lever or [] if n not in levers(task)]
    if bad:
        raise SystemExit(f"error: unknown lever(s) {', '.join(bad)} for {task}; use {', '.join(levers(task))}")
    print(f"{label}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    marks = [m for m in (100, 200, 300, 400, 600, 800, 1000, 1600, 2000, 3000, 4000, 6000, 8000, 11000) if m <= a.iterations]
    print("| lever | s/it | " + " | ".join(f"@{m}" for m in marks) + f" | peak | time to {a.target:g} dB |")
    print("|---|---|" + "---|" * len(marks) + "---|---|")
    for name in a.lever or ["default"]:
        ps, spi = run(task, name, y, gt, op, metric, a.iterations, a.seed)
        best_it = max(range(len(ps)), key=ps.__getitem__)
        reach = next((i for i, v in enumerate(ps) if v >= a.target), None)
        reach_s = f"{(reach + 1) * spi:.0f} s ({reach + 1} it)" if reach is not None else "not reached"
        print(f"| {name} | {spi:.3f} | " + " | ".join(f"{ps[m - 1]:.2f}" for m in marks)
              + f" | {ps[best_it]:.2f} @ {best_it + 1} | {reach_s} |", flush=True)


if __name__ == "__main__":
    main()
