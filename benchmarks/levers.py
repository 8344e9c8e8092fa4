"""Measure speed levers on one restoration problem: quality of the estimate against iterations and time.

    python benchmarks/levers.py NOISY GT [--crop 256] [--iterations 800] [--lever NAME ...] [--target 31.18]
    python benchmarks/levers.py --case inpaint-house --crop 256 --iterations 1000 --lever default --lever lr0.02
    python benchmarks/levers.py --case sr4-butterfly --iterations 1000 --lever default --target 26.19
    python benchmarks/levers.py --case denoise-F16 --crop 0 --iterations 1000 --lever separable --stop auto

The first form denoises NOISY against GT; ``--case`` takes a case of ``benchmarks/stopping.py``
(denoise-F16, inpaint-house, sr4-butterfly, synthetic-coffee-s50, ...) from ``--data``.
Each lever is a named change to the task's default preset (network, fitting settings or input);
"default" is the preset itself; ``betas-B1-B2`` (any task) sets the optimiser's betas. Runs use no
stopping rule, so the curves are comparable (``--stop auto``: the preset's rule ends each run, and
the returned estimate is reported too; for inpainting with a preset that holds pixels out,
restore()'s held-out stop and the stretch on every known pixel after it, whose iterations count in
"iterations run" but not in the columns; the lever held-out-5 (and -2; held-out-holes-5, which holds
out pieces shaped like the missing region; and held-out-far-5, which holds out pixels 3 or more
pixels from any missing one), which holds the pixels out itself, keeps the windowed variance; with
--progress, held-out-holes-5 and held-out-far-5 also print the error on their held-out pixels).
Prints a markdown table: s/it, quality after 100/200/... iterations (RGB PSNR; Y PSNR with 4
pixels shaved for super-resolution), the oracle peak and the time to reach --target (ground
truth is only measured, it never drives the fit).
"""
from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

import neuralprior as npr
from neuralprior.latent import make_latent, padded_size
from neuralprior.metrics import estimate_noise_sigma, psnr
from neuralprior.networks import set_fused
from neuralprior.operators import Downsample, Mask, gaussian_kernel
from neuralprior.presets import WIDE_TOP_NET
from neuralprior.stopping import HeldOutError
from neuralprior.tasks import MIN_HELD_OUT, _after_held_out_stop, _configured_preset, _hold_out, _operator   # as restore() does
from stopping import cases, crop_case, drawn_sigma

WIDE_TOP = WIDE_TOP_NET      # 32 channels at full resolution, skip 8 (the `quality` presets' network)
PAPER_WIDTH = dict(channels_down=[128] * 5, channels_up=[128] * 5)
# the classic deep image prior: z ~ U(0, 0.1), MSE to the noisy image, sigma_p 1/30
NOISE_INPUT = dict(input_kind="noise", loss="mse", reg_noise_std=1 / 30)
# z = the noisy image, Stein's unbiased risk estimate as the loss (noise level estimated from the image)
SURE = dict(input_kind="observation", loss="sure", noise_sigma=None)
# name: (network overrides, FitConfig overrides[, preset]), both on top of the task's default preset (or the one named)
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
        "nadam": ({}, dict(optimizer="nadam")),
        "radam": ({}, dict(optimizer="radam")),
        "sure-float32": ({}, dict(SURE, precision="float32", channels_last=False)),
        "sure-skip16": (dict(channels_skip=16), SURE),
        "sigma-p-0.05": ({}, dict(reg_noise_std=0.05, reg_noise_per_variance=0.0)),
        "sure-batched": ({}, dict(sure_batched=True)),
        "ema0.98": ({}, dict(ema=0.98)),
        # the SURE loss's noise level: Donoho's median rule alone (the estimate until 2026-11-28), or the root mean
        # square of the noise actually added (read off the ground truth: a reference the fit cannot have)
        "median-rule-noise": ({}, {}),
        "oracle-noise-rms": ({}, {}),
        # the std the noise was drawn with, before clipping (25 for the development images, N for synthetic-*-sN),
        # as noise_sigma / --noise-sigma give it: converted to the clipped noise's rms, or used as it is (until
        # 2026-12-02)
        "given-sigma": ({}, {}),
        "given-sigma-as-is": ({}, {}),
        # the default network until 2026-11-27 (reflection padding, bilinear upsampling) and each half of it
        "reflection-bilinear": (dict(pad="reflection", upsample="bilinear"), {}),
        "reflection-pad": (dict(pad="reflection"), {}),
        "bilinear-up": (dict(upsample="bilinear"), {}),
        # half the channels at full resolution, where most of the cost is
        "top8": (dict(channels_down=[8, 32, 64, 128, 128], channels_up=[8, 32, 64, 128, 128]), {}),
        # depthwise-separable 3x3 convolutions at every level, or at the full-resolution level only
        "separable": (dict(separable=True), {}),
        "separable-top": (dict(separable=[True, False, False, False, False]), {}),
        # cosine decay of the learning rate to a tenth over the run (--iterations)
        "lr-decay": ({}, dict(lr_decay_to=0.1)),
        # the Deep Decoder (the `decoder` preset: random z, MSE, under-parameterised), not the default's fit
        "deep-decoder": ({}, {}, "decoder"),
        # a third of the iterations on the image downscaled 2x (a quarter of the pixels), then the rest on the
        # image with the same weights; the coarse estimates are scored upsampled (bilinear)
        "coarse-to-fine": ({}, {}),
        # two fits from different seeds, their estimates averaged: each "iteration" is one step of both
        "restarts-2": ({}, {}),
        # the default network computed layer by layer, without its fused nearest-upsampling levels
        "unfused": ({}, {}),
    },
    # inpainting and super-resolution fit random z through their operator
    "other": {
        "default": ({}, {}),
        "lr0.005": ({}, dict(lr=0.005)),
        "lr0.02": ({}, dict(lr=0.02)),
        "lr0.05": ({}, dict(lr=0.05)),
        "lr-decay": ({}, dict(lr_decay_to=0.1)),
        "no-ema": ({}, dict(ema=0.0)),
        "ema0.95": ({}, dict(ema=0.95)),
        "ema0.995": ({}, dict(ema=0.995)),
        # 8 skip channels at every level instead of 4 (the wider top's skip, without its 32 channels)
        "skip8": (dict(channels_skip=8), {}),
        # cheaper at full resolution, where the super-resolution step spends most (the 36-to-16 3x3 convolution):
        # 8 channels there, or its 3x3 convolutions depthwise-separable
        "top8": (dict(channels_down=[8, 32, 64, 128, 128], channels_up=[8, 32, 64, 128, 128]), {}),
        "separable-top": (dict(separable=[True, False, False, False, False]), {}),
        "sigma-p0": ({}, dict(reg_noise_std=0.0)),
        "sigma-p0.01": ({}, dict(reg_noise_std=0.01)),
        "sigma-p0.06": ({}, dict(reg_noise_std=0.06)),
        "wide-top-sigma-p0.01": (WIDE_TOP, dict(reg_noise_std=0.01)),
        "wide-top": (WIDE_TOP, {}),
        # the wider top with bilinear upsampling, as the paper's restoration network (inpainting presets: nearest)
        "wide-top-bilinear": (dict(WIDE_TOP, upsample="bilinear"), {}),
        # two (or three) fits from successive seeds, their estimates averaged (each "iteration" is one step of each
        # fit), with the default's network or the wider top's (the inpainting `quality` preset's network); the last
        # with the cosine decay of the learning rate to a tenth over the run in each fit
        "restarts-2": ({}, {}),
        "wide-top-restarts-2": (WIDE_TOP, {}),
        "wide-top-restarts-3": (WIDE_TOP, {}),
        "wide-top-lr-decay-restarts-2": (WIDE_TOP, dict(lr_decay_to=0.1)),
        "paper-width": (PAPER_WIDTH, {}),
        "float32": ({}, dict(precision="float32", channels_last=False)),
        "zero-pad": (dict(pad="zero"), {}),
        "zero-pad-nearest-up": (dict(pad="zero", upsample="nearest"), {}),
        "nearest-up": (dict(upsample="nearest"), {}),     # reflection padding kept (inpainting: its default)
        # inpainting: the input z is the observation filled in (see fill_input), not random noise
        "fill-input": ({}, dict(input_kind="observation")),
        # the fit without the 5% of known pixels the held-out stop keeps apart (its cost in quality)
        "held-out-5": ({}, {}),
        "held-out-2": ({}, {}),          # the same with 2% held out
        # 5% held out in pieces of the missing region moved elsewhere (shaped like the holes; see holes_like_missing)
        "held-out-holes-5": ({}, {}),
        # 5% held out at random among the known pixels 3 or more pixels from any missing one (see far_from_missing)
        "held-out-far-5": ({}, {}),
        "fill-input-keep": ({}, dict(input_kind="observation")),
        # the perturbation of z scaled by min(1, t / 600) at step t (same z)
        "sigma-p-ramp600": ({}, {}),
        # super-resolution: the preset's perturbation (0.03) until step 800, then one of another std (same z and draws)
        "sigma-p-0.01-from800": ({}, {}),
        "sigma-p-0-from800": ({}, {}),
        "sigma-p-0.06-from800": ({}, {}),
        # super-resolution: the model's downsampling kernel, Lanczos with support 3 or 2 (the paper's)
        "lanczos3": ({}, {}),
        "lanczos2": ({}, {}),
        # super-resolution: the input z is the observation upsampled (bicubic) to the output size
        "upsampled-input": ({}, dict(input_kind="observation")),
        "upsampled-input-sigma-p0.1": ({}, dict(input_kind="observation", reg_noise_std=0.1)),
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


BETAS = r"betas-([\d.]+)-([\d.]+)"        # the optimiser's (beta1, beta2), e.g. betas-0.8-0.99, for any task


def lever(task: str, name: str) -> tuple | None:
    """(network overrides, FitConfig overrides[, preset]) of lever ``name`` for ``task``; None if unknown."""
    betas = re.fullmatch(BETAS, name)
    if betas:
        return {}, dict(betas=(float(betas[1]), float(betas[2])))
    return levers(task).get(name)


RESTARTS = r"restarts-(\d+)$"            # the levers made of several fits averaged (run_staged)
RAMP, DROP = r"sigma-p-ramp(\d+)", r"sigma-p-([\d.]+)-from(\d+)"      # the perturbation schedules' lever names


def perturbation_schedule(net, name: str, cfg, size, seed: int) -> torch.Tensor:
    """The z that ``fit`` would draw for ``net``; a hook on ``net`` rescales the perturbation of z per step.

    ``sigma-p-rampN``: the perturbation times min(1, t / N) at the t-th training pass.
    ``sigma-p-V-fromN``: the preset's perturbation until the N-th training pass, then one of std V.
    """
    ramp, drop = re.fullmatch(RAMP, name), re.fullmatch(DROP, name)
    if ramp:
        n = int(ramp[1])
        scale = lambda t: min(1.0, t / n)                                                   # noqa: E731
    elif drop and cfg.reg_noise_std > 0:
        v, n = float(drop[1]) / cfg.reg_noise_std, int(drop[2])
        scale = lambda t: 1.0 if t < n else v                                               # noqa: E731
    else:
        raise ValueError(f"no perturbation schedule {name!r} (for a preset with a perturbation)")
    ph, pw = padded_size(*size, net.multiple)
    z = make_latent(cfg.input_kind, net.in_channels, net.latent_size(ph, pw), scale=cfg.input_scale,
                    generator=torch.Generator().manual_seed(seed))
    step = [0]

    def rescale(module, inputs):
        if not module.training:
            return None
        t, step[0] = step[0], step[0] + 1
        zz = z.to(inputs[0])
        return (zz + scale(t) * (inputs[0] - zz),)
    net.register_forward_pre_hook(rescale)
    return z


def run(task: str, name: str, y, gt, operator, metric, iterations: int, seed: int, auto: bool = False,
        progress: int = 0, sigma: float | None = None):
    """Fit with lever ``name``; returns (quality per iteration, seconds per iteration, stop).

    ``auto``: the preset's automatic stopping rule ends the fit, and ``stop`` is (iteration of the
    returned estimate, its quality, iterations run); otherwise no rule and ``stop`` is None. ``progress`` > 0: every
    that many iterations, the quality and the elapsed time go to stderr (long runs). ``sigma``: the std
    the noise was drawn with (0-255), where known (levers ``given-sigma*``).

    An iteration the divergence guard rolls back reports no estimate: it keeps the previous one's quality.
    """
    net_over, fit_over, *base = lever(task, name)
    if name == "median-rule-noise":
        fit_over = dict(fit_over, noise_sigma=estimate_noise_sigma(y, clipped=False))
    if name == "oracle-noise-rms":
        fit_over = dict(fit_over, noise_sigma=float((y - gt).pow(2).mean().sqrt()))
    if name.startswith("given-sigma"):
        if sigma is None:
            raise SystemExit(f"error: lever {name} needs a case whose noise std is known (denoise-*, synthetic-*-sN)")
        fit_over = dict(fit_over, noise_sigma=sigma / 255)
    # levels that are already the noise's rms: not converted as a std before clipping would be
    as_is = name in ("median-rule-noise", "oracle-noise-rms", "given-sigma-as-is")
    preset = _configured_preset(task, base[0] if base else "default", dict(fit_over, num_iter=iterations),
                                factor=getattr(operator, "factor", None))
    preset.network_args = {**preset.network_args, **net_over}
    net = preset.build_network(gt.shape[1], seed=seed)
    if name == "unfused":           # the same network computed layer by layer (no fused SkipNet levels)
        set_fused(net, False)
    if name == "coarse-to-fine" or re.search(RESTARTS, name):
        if auto:
            raise SystemExit(f"error: lever {name} runs without --stop auto")
        return run_staged(name, y, gt, operator, metric, preset, net, iterations, seed, progress)
    rule, whole = (preset.stopping_rule() if auto else "none"), None
    if auto and task == "inpaint" and preset.held_out and not name.startswith("held-out-"):
        # restore()'s stop: 5% of the known pixels held out (before any lever reads the observation), then the stretch
        whole = (y, operator)
        operator, rule = _hold_out(operator, y, rule, preset.held_out, seed=seed)
        y = y * operator.mask
    latent = None
    if name.startswith("fill-input"):
        if task != "inpaint":
            raise SystemExit(f"error: lever {name} is for inpainting cases")
        latent = fill_input(y, operator.mask, keep=name == "fill-input-keep")
    watch = None
    if name.startswith("held-out-"):
        if task != "inpaint":
            raise SystemExit(f"error: lever {name} is for inpainting cases")
        fraction = int(name.split("-")[-1]) / 100
        if name.startswith(("held-out-holes-", "held-out-far-")):      # drawn with the run's seed
            known = float(operator.mask.sum())
            draw = holes_like_missing if name.startswith("held-out-holes-") else far_from_missing
            fitted, held = draw(operator.mask, fraction, seed)
            operator, watch = Mask(fitted), HeldOutError(y, held)
            print(f"{name}: {watch.count} pixels held out, {watch.count / known:.1%} of the known ones", file=sys.stderr)
        else:
            operator = _hold_out(operator, y, None, dict(preset.held_out, fraction=fraction), seed=0)[0]  # as restore(seed=0)
        y = y * operator.mask
    if name in ("lanczos2", "lanczos3"):
        if task != "super-resolve":
            raise SystemExit(f"error: lever {name} is for super-resolution cases")
        operator = Downsample(operator.factor, name)
    if re.fullmatch(RAMP, name) or re.fullmatch(DROP, name):
        latent = perturbation_schedule(net, name, preset.fit, gt.shape[-2:], seed)
    if name.startswith("upsampled-input"):
        if task != "super-resolve":
            raise SystemExit(f"error: lever {name} is for super-resolution cases")
        latent = torch.nn.functional.interpolate(y, size=gt.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    seen: dict[int, float] = {}
    t0 = time.perf_counter()

    def record(s):
        if s.stage:                 # the stretch after a held-out stop: only its end is reported (the stop column)
            return
        seen[s.iteration] = metric(s.estimate.cpu(), gt)
        if progress and (s.iteration + 1) % progress == 0:
            error = f", held-out error {watch.error(s.estimate):.5f}" if watch else ""
            print(f"{name}: iteration {s.iteration + 1}, {seen[s.iteration]:.2f}{error}, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    held_out = isinstance(rule, HeldOutError)
    with _levels_as_given(as_is):
        r = npr.fit(y, operator, net=net, config=preset.fit, stop=rule, seed=seed, latent=latent, callback=record,
                    keep_best_state=held_out)
    ran = r.iterations_run
    if held_out:
        r = _after_held_out_stop(r, rule, preset.held_out, *whole, net, preset.fit, callback=record)
    stop = (r.stopped_at, metric(r.image, gt), r.iterations_run) if auto else None
    return _series(seen, ran), (time.perf_counter() - t0) / r.iterations_run, stop


def far_from_missing(mask: torch.Tensor, fraction: float, seed: int, distance: float = 3.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(fitted, held out): ``fraction`` of the known pixels of a (1, 1, H, W) ``mask`` held out, drawn at
    random among those at least ``distance`` pixels from the nearest missing one, so that the border of
    every hole stays fitted (masks with large holes; random masks have no such pixels)."""
    known = mask[0, 0].cpu().numpy() > 0.5
    far = np.flatnonzero(ndimage.distance_transform_edt(known) >= distance)
    count = int(round(fraction * known.sum()))
    if count < MIN_HELD_OUT:
        raise SystemExit(f"error: {fraction:.0%} of the known pixels is {count}, fewer than {MIN_HELD_OUT}")
    if far.size < count:
        raise SystemExit(f"error: {far.size} known pixels lie {distance:g} or more pixels from a missing one, "
                         f"fewer than {fraction:.0%} of the known pixels ({count})")
    held = np.zeros(known.size, dtype=bool)
    held[np.random.default_rng(seed).choice(far, count, replace=False)] = True
    return _split(mask, held.reshape(known.shape))


def holes_like_missing(mask: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fitted, held out): about ``fraction`` of the known pixels of a (1, 1, H, W) ``mask`` held out in
    pieces shaped like its missing region: the missing region is moved by a random offset (wrapping
    round), and the connected pieces of it that fall on known pixels are taken whole, in random order,
    while the total stays under 1.2 x the fraction, until the fraction is reached (or 100 offsets are tried)."""
    known = mask[0, 0].cpu().numpy() > 0.5
    rng = np.random.default_rng(seed)
    held = np.zeros_like(known)
    count, budget = 0, fraction * known.sum()
    for _ in range(100):
        moved = np.roll(~known, (rng.integers(known.shape[0]), rng.integers(known.shape[1])), (0, 1))
        pieces, n = ndimage.label(moved & known & ~held)
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)
        taken = []
        for k in rng.permutation(n) + 1:
            if count >= budget:
                break
            if count + sizes[k] <= 1.2 * budget:
                taken.append(k)
                count += sizes[k]
        held |= np.isin(pieces, taken)
        if count >= budget:
            break
    if count < MIN_HELD_OUT:
        raise SystemExit(f"error: no pieces of the missing region fit in {fraction:.0%} of the known pixels")
    return _split(mask, held)


def _split(mask: torch.Tensor, held: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(fitted, held out) masks of ``mask`` (1, 1, H, W) and a boolean H x W array of pixels to hold out."""
    h = torch.from_numpy(held.astype(np.float32))[None, None].to(mask.device, mask.dtype)
    return mask * (1 - h), h


@contextmanager
def _levels_as_given(on: bool):
    """With ``on``, a given noise_sigma goes to the SURE loss as it is (not as a std before clipping)."""
    fit_module = sys.modules["neuralprior.fit"]     # the module: the package's name ``fit`` is the function
    real = fit_module.clipped_noise_rms
    if on:
        fit_module.clipped_noise_rms = lambda y, sigma: sigma
    try:
        yield
    finally:
        fit_module.clipped_noise_rms = real


def _series(seen: dict[int, float], iterations: int) -> list[float]:
    """Quality per iteration; an iteration with none recorded (rolled back by the guard) keeps the previous one."""
    scores, last = [], float("nan")
    for it in range(iterations):
        last = seen.get(it, last)
        scores.append(last)
    return scores


def run_staged(name, y, gt, operator, metric, preset, net, iterations: int, seed: int, progress: int = 0):
    """The levers made of several fits: ``coarse-to-fine`` (denoising) and ``...restarts-N`` (N fits from
    successive seeds, one after the other, their estimates of the same iteration averaged and scored).
    ``progress`` > 0: every that many iterations the quality goes to stderr (for restarts, that of each fit
    alone and, with the last fit, of the average)."""
    seen: dict[int, float] = {}
    t0 = time.perf_counter()
    if name == "coarse-to-fine":
        coarse = iterations // 3
        small = torch.nn.functional.avg_pool2d(y, 2)
        up = lambda e: torch.nn.functional.interpolate(e, size=gt.shape[-2:], mode="bilinear", align_corners=False)
        npr.fit(small, net=net, config=replace(preset.fit, num_iter=coarse), stop="none", seed=seed,
                callback=lambda s: seen.__setitem__(s.iteration, metric(up(s.estimate.cpu()).clamp(0, 1), gt)))
        npr.fit(y, net=net, config=replace(preset.fit, num_iter=iterations - coarse), stop="none", seed=seed,
                callback=lambda s: seen.__setitem__(coarse + s.iteration, metric(s.estimate.cpu(), gt)))
        return _series(seen, iterations), (time.perf_counter() - t0) / iterations, None
    fits = int(re.search(RESTARTS, name)[1])
    total: dict[int, torch.Tensor] = {}     # the sum of the earlier fits' estimates per iteration (on the CPU)
    for k in range(fits):
        mine: dict[int, torch.Tensor] = {}

        def add(s, k=k, mine=mine):
            one = s.estimate.detach().to("cpu", copy=True)      # fit() updates its estimate in place
            if k == fits - 1:           # the last fit: scored with the others' sum, not kept
                seen[s.iteration] = metric((total.get(s.iteration, 0) + one) / fits, gt)
            else:
                mine[s.iteration] = one
            if progress and (s.iteration + 1) % progress == 0:
                average = f", average of {fits} {seen[s.iteration]:.2f}" if k == fits - 1 else ""
                print(f"{name}: fit {k + 1} (seed {seed + k}), iteration {s.iteration + 1}, "
                      f"{metric(one, gt):.2f}{average}, {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr, flush=True)
        net_k = net if k == 0 else preset.build_network(gt.shape[1], seed=seed + k)
        npr.fit(y, operator, net=net_k, config=preset.fit, stop="none", seed=seed + k, callback=add)
        if k < fits - 1:
            for it in range(iterations):    # an iteration rolled back by the guard keeps the previous estimate
                prev = mine[it] = mine.get(it, prev if it else None)
                total[it] = total.get(it, 0) + mine.pop(it)
    return _series(seen, iterations), (time.perf_counter() - t0) / iterations, None


def problem(a):
    """(task, observation, ground truth, operator, metric, label) from the command line."""
    if a.case:
        synthetic = re.fullmatch(r"synthetic-(\w+)-s(\d+)", a.case)      # any skimage.data image, any sigma
        jpeg = re.fullmatch(r"jpeg-(\w+)-q(\d+)", a.case)                  # any skimage.data image, any quality
        try:
            found = [c for c in (cases(Path(a.data), [int(synthetic[2])], [synthetic[1]]) if synthetic
                                 else cases(Path(a.data), (), [jpeg[1]], [int(jpeg[2])]) if jpeg
                                 else cases(Path(a.data))) if c[0] == a.case]
        except Exception as e:      # an unknown image, or one scikit-image would have to download
            raise SystemExit(f"error: case {a.case!r}: {type(e).__name__}: {e}") from None
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
    p.add_argument("--stop", choices=["none", "auto"], default="none",
                   help="auto: the preset's automatic stop ends each run (its returned estimate is reported)")
    p.add_argument("--progress", type=int, default=0, metavar="N",
                   help="print the quality and elapsed time to stderr every N iterations")
    a = p.parse_args()
    task, y, gt, op, metric, label = problem(a)
    bad = [n for n in a.lever or [] if lever(task, n) is None]
    if bad:
        raise SystemExit(f"error: unknown lever(s) {', '.join(bad)} for {task}; use {', '.join(levers(task))} "
                         "or betas-B1-B2")
    print(f"{label}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    marks = [m for m in (100, 200, 300, 400, 600, 800, 1000, 1600, 2000, 3000, 4000, 6000, 8000, 11000) if m <= a.iterations]
    auto = a.stop == "auto"
    extra = " automatic stop: returned (iterations run) | quality returned |" if auto else ""
    print("| " + " | ".join(["lever", "s/it", *(f"@{m}" for m in marks), "peak", f"time to {a.target:g} dB"]) + " |" + extra)
    print("|---|---|" + "---|" * len(marks) + "---|---|" + "---|---|" * auto)
    for name in a.lever or ["default"]:
        ps, spi, stop = run(task, name, y, gt, op, metric, a.iterations, a.seed, auto, a.progress, drawn_sigma(label))
        best_it = max(range(len(ps)), key=ps.__getitem__)
        reach = next((i for i, v in enumerate(ps) if v >= a.target), None)
        reach_s = f"{(reach + 1) * spi:.0f} s ({reach + 1} it)" if reach is not None else "not reached"
        row = [f"{ps[m - 1]:.2f}" if m <= len(ps) else "-" for m in marks]
        stop_s = f" {stop[0]} ({stop[2]}) | {stop[1]:.2f} |" if stop else ""
        cells = [name, f"{spi:.3f}", *row, f"{ps[best_it]:.2f} @ {best_it + 1}", reach_s]
        print("| " + " | ".join(cells) + " |" + stop_s, flush=True)


if __name__ == "__main__":
    main()
