"""Measure speed levers on one denoising problem: PSNR of the estimate against iterations and time.

    python benchmarks/levers.py NOISY GT [--crop 256] [--iterations 800] [--lever NAME ...] [--target 31.18]

Each lever is a named change to the default denoising preset (network, fitting settings or input);
"default" is the preset itself. Runs use no stopping rule, so the curves are comparable.
Prints a markdown table: s/it, PSNR after 200/400/800 iterations, the oracle peak and the time to
reach --target (ground truth is only measured, it never drives the fit).
"""
from __future__ import annotations

import argparse
import platform
from dataclasses import replace

import torch

import neuralprior as npr
from neuralprior.latent import crop_center
from neuralprior.presets import get_preset

WIDE_TOP = dict(channels_down=[32, 64, 64, 128, 128], channels_up=[32, 64, 64, 128, 128], channels_skip=8)
# the classic deep image prior: z ~ U(0, 0.1), MSE to the noisy image, sigma_p 1/30
NOISE_INPUT = dict(input_kind="noise", loss="mse", reg_noise_std=1 / 30)
# z = the noisy image, Stein's unbiased risk estimate as the loss (noise level estimated from the image)
SURE = dict(input_kind="observation", loss="sure", noise_sigma=None)
# name: (network overrides, FitConfig overrides), both on top of the default denoising preset
LEVERS = {
    "default": ({}, {}),
    "noise-input": ({}, NOISE_INPUT),
    "noise-input-lr0.02": ({}, dict(NOISE_INPUT, lr=0.02)),
    "noise-input-paper-net": (dict(channels_down=[128] * 5, channels_up=[128] * 5), NOISE_INPUT),
    "noise-input-wide-top": (WIDE_TOP, NOISE_INPUT),
    "observation-mse": ({}, dict(input_kind="observation", loss="mse")),
    "sure-eps0.01-sp0": ({}, dict(SURE, sure_epsilon=0.01, reg_noise_std=0.0)),
    "sure-eps0.2-sp0": ({}, dict(SURE, sure_epsilon=0.2, reg_noise_std=0.0)),
    "sure-lr0.02": ({}, dict(SURE, lr=0.02)),
    "sure-float32": ({}, dict(SURE, precision="float32", channels_last=False)),
    "sure-skip16": (dict(channels_skip=16), SURE),
}


def run(name: str, y: torch.Tensor, gt: torch.Tensor, iterations: int, seed: int):
    net_over, fit_over = LEVERS[name]
    preset = get_preset("denoise", "default")
    preset.network_args = {**preset.network_args, **net_over}
    preset.fit = replace(preset.fit, num_iter=iterations, **fit_over)
    net = preset.build_network(y.shape[1], seed=seed)
    return npr.fit(y, net=net, config=preset.fit, stop="none", x_true=gt, seed=seed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("noisy")
    p.add_argument("gt")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--iterations", type=int, default=800)
    p.add_argument("--lever", action="append", choices=sorted(LEVERS))
    p.add_argument("--target", type=float, default=31.18)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    y, _ = npr.load_image(a.noisy)
    gt, _ = npr.load_image(a.gt)
    if a.crop:
        y, gt = crop_center(y, a.crop, a.crop), crop_center(gt, a.crop, a.crop)
    print(f"{a.noisy} crop {a.crop}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    marks = [m for m in (100, 200, 300, 400, 600, 800, 1600) if m <= a.iterations]
    print("| lever | s/it | " + " | ".join(f"@{m}" for m in marks) + f" | peak | time to {a.target:g} dB |")
    print("|---|---|" + "---|" * len(marks) + "---|---|")
    for name in a.lever or ["default"]:
        r = run(name, y, gt, a.iterations, a.seed)
        ps = r.history["psnr"]
        spi = r.seconds / r.iterations_run
        best, best_it = r.oracle_best
        reach = next((i for i, v in enumerate(ps) if v >= a.target), None)
        reach_s = f"{(reach + 1) * spi:.0f} s ({reach + 1} it)" if reach is not None else "not reached"
        print(f"| {name} | {spi:.3f} | " + " | ".join(f"{ps[m - 1]:.2f}" for m in marks)
              + f" | {best:.2f} @ {best_it + 1} | {reach_s} |", flush=True)


if __name__ == "__main__":
    main()
