"""Evidence for automatic stopping: where the no-reference rule stops versus the oracle peak.

Each image is fitted once for a fixed long run (``--iterations``) with the task's preset and
no stopping; the automatic rule (the one ``stop="auto"`` uses) watches the same estimates
through a callback, so one run gives all three numbers: the PSNR of the estimate the rule
returns and where it stops, the oracle peak (best PSNR against the ground truth, which
the rule never sees) and the PSNR after the fixed long run.

    python benchmarks/stopping.py --data ../shared/data --iterations 3000 --out docs/stopping-results
    python benchmarks/stopping.py --only denoise synthetic --iterations 1000 --crop 256

Writes ``stopping.csv`` and ``stopping.md`` (a markdown table) to ``--out`` as rows finish, and
``series/CASE.json``: the quality, the loss, the estimate's RMS residual to the observation in grey levels
(denoising and JPEG) and the rule's windowed variance at every iteration, from which
other rule settings (tolerance, patience) can be evaluated without fitting again:

    python benchmarks/stopping.py --replay stopping-results/series --tolerance 0.002 --patience 200
    python benchmarks/stopping.py --replay stopping-results/series --tolerance 0.008 --tolerance-power 2
    python benchmarks/stopping.py --masks --crop 256       # no fitting: how large the inpainting cases' holes are
Cases: denoising sigma 25 (3 images), inpainting 50% (3), text inpainting (kate, the examples'
text mask), large holes (library, the examples' mask), Set5 x4 (5, Y PSNR shaved 4; x2, x3 and x8 with ``--sr-factors``), and
synthetic Gaussian noise sigma 15/25/50 (``--sigmas``) on scikit-image's astronaut and coffee (``--images``),
x4 super-resolution of their centred 256x256 crops (``synthetic-sr4-*``, made as Set5's low-resolution
images are), noisy inpainting on the same images (sigma 25, half the pixels missing at random), and JPEG artefacts
on them and on the three denoising images' ground truths (quality 10, ``--jpeg-qualities``; the paper's JPEG example
has no ground truth), or on the images named by ``--jpeg-images`` only (any clean image of the data folder, by
name, or of scikit-image):

    python benchmarks/stopping.py --only jpeg --jpeg-images butterfly house --jpeg-qualities 5 --crop 256 --iterations 2400

``--stop held-out`` runs the denoising cases as ``restore(stop="held-out")`` fits them (3% of the pixels held
out, the stop on their error); its series replay with ``--patience`` and ``--min-iterations``:

    python benchmarks/stopping.py --stop held-out --only synthetic-moon --images moon --sigmas 50 --crop 256 --iterations 800

Single runs on strong noise move by up to a dB with small changes: ``--seed S`` fits the same cases from
another seed (network, perturbations, held-out pixels; the noise is drawn as always), to judge a rule on several.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import neuralprior as npr
from neuralprior._validation import NeuralPriorError, check_betas
from neuralprior.latent import crop_center
from neuralprior.metrics import psnr, psnr_y
from neuralprior.fit import noise_level
from neuralprior.presets import HELD_OUT_NOISE, get_preset
from neuralprior.operators import Mask
from neuralprior.stopping import HeldOutError, WindowedVariance, residual_rms
from neuralprior.tasks import _hold_out          # how restore() holds pixels out for the inpainting stop
from neuralprior.tasks import hold_out_noisy_pixels     # and noisy pixels for denoising's stop="held-out"

# the WindowedVariance settings a replay can change (--tolerance ... --min-decrease), saved with every series
REPLAYED = ("tolerance", "tolerance_power", "settled", "residual_power", "rise", "settle_lag", "settle_ratio",
            "loss_floor", "min_decrease")
PAPER_ITERS = {"denoise": 3000, "inpaint": 11000, "super-resolve": 2000, "jpeg": 2400}
PAPER_TEXT_ITERS = 6001        # the paper's text inpainting (kate): 6001 iterations, not restoration's 11000
PAPER_HOLES_ITERS = 3001       # the paper's large-hole inpainting (library, its figure 8): 3001 iterations


def _tensor(im: Image.Image) -> torch.Tensor:
    a = np.asarray(im, dtype=np.float32) / 255
    return torch.from_numpy(a[..., None] if a.ndim == 2 else a).permute(2, 0, 1)[None].contiguous()


GROUND_TRUTHS = {**{n: f"denoise-sigma25/{n}_GT.png" for n in ("F16", "kodim03", "peppers")},
                 **{n: f"inpaint-half/{n}_GT.png" for n in ("barbara", "boat", "house")},          # greyscale
                 **{n: f"sr-set5/{n}_GT.png" for n in ("baby", "bird", "butterfly", "head", "woman")},
                 "zebra": "examples/zebra_GT.png", "kate": "examples/kate.png", "vase": "examples/vase.png",
                 "library": "examples/library.png"}
"""The clean images of the data folder, by name, that JPEG cases can be made of (``--jpeg-images``)."""


def jpeg_source(data: Path, name: str) -> Image.Image:
    """A clean image to compress: a ground truth of the data folder (``GROUND_TRUTHS``, greyscale ones kept
    greyscale) or a scikit-image image (``skimage.data`` name)."""
    if name in GROUND_TRUTHS:
        path = data / GROUND_TRUTHS[name]
        if not path.is_file():
            raise SystemExit(f"error: --jpeg-images: {name!r} needs {path}, which is not there")
        im = Image.open(path)
        return im if im.mode == "L" else im.convert("RGB")
    from skimage import data as skd

    if not callable(getattr(skd, name, None)):
        raise SystemExit(f"error: --jpeg-images: {name!r} is neither a ground truth of the data folder "
                         f"({', '.join(GROUND_TRUTHS)}) nor a scikit-image image")
    return Image.fromarray(getattr(skd, name)())


def cases(data: Path, sigmas=(15, 25, 50), images=("astronaut", "coffee"), jpeg_qualities=(10,), jpeg_images=None,
          sr_factors=(4,)):
    """(name, task, observation, ground truth, kwargs, metric); ``sigmas``: the synthetic noise levels,
    ``images``: the scikit-image images (``skimage.data`` names) they are added to; ``jpeg_qualities``:
    the JPEG qualities (Pillow's 1 to 95 scale, its default 4:2:0 chroma subsampling) of the synthetic
    JPEG cases on the same images and on the denoising ground truths, or, given ``jpeg_images``, on
    those images only (``jpeg_source`` names); ``sr_factors``: the Set5 super-resolution factors (``srF-NAME``)."""
    if (data / "denoise-sigma25").is_dir():
        for n in ("F16", "kodim03", "peppers"):
            y, _ = npr.load_image(data / "denoise-sigma25" / f"{n}_noisy.png")
            gt, _ = npr.load_image(data / "denoise-sigma25" / f"{n}_GT.png")
            yield f"denoise-{n}", "denoise", y, gt, {}, psnr
    if (data / "inpaint-half").is_dir():
        for n in ("barbara", "boat", "house"):
            y, _ = npr.load_image(data / "inpaint-half" / f"{n}_masked.png")
            gt, _ = npr.load_image(data / "inpaint-half" / f"{n}_GT.png")
            yield f"inpaint-{n}", "inpaint", y, gt, {"mask": (y != 0).any(1, keepdim=True).float()}, psnr
    if (data / "examples" / "kate_mask.png").is_file():     # text over a clean photograph: a mask not drawn at random
        gt, _ = npr.load_image(data / "examples" / "kate.png")
        mask = (npr.load_image(data / "examples" / "kate_mask.png")[0] > 0.5).float()
        yield "inpaint-kate-text", "inpaint", gt * mask, gt, {"mask": mask}, psnr
    if (data / "examples" / "library_mask.png").is_file():  # large holes (18.6% of the pixels, strokes tens of pixels wide)
        gt, _ = npr.load_image(data / "examples" / "library.png")
        mask = (npr.load_image(data / "examples" / "library_mask.png")[0] > 0.5).float()
        yield "inpaint-library-holes", "inpaint", gt * mask, gt, {"mask": mask}, psnr
    if (data / "sr-set5").is_dir():
        for n in ("baby", "bird", "butterfly", "head", "woman"):
            sharp = Image.open(data / "sr-set5" / f"{n}_GT.png").convert("RGB")
            w, h = sharp.size
            for f in sr_factors:
                m = 32 * f // math.gcd(32, f)       # a multiple of the network's 32 and of the factor
                W, H = w - w % m, h - h % m
                hr = sharp.crop(((w - W) // 2, (h - H) // 2, (w - W) // 2 + W, (h - H) // 2 + H))
                lr = hr.resize((W // f, H // f), Image.LANCZOS)
                yield f"sr{f}-{n}", "super-resolve", _tensor(lr), _tensor(hr), {"factor": f}, psnr_y
    from skimage import data as skd

    photos = {n: Image.fromarray(getattr(skd, n)()) for n in images}      # each read once
    for img_name in images:
        clean = _tensor(photos[img_name])
        for sigma in sigmas:
            g = torch.Generator().manual_seed(sigma)
            noisy = torch.round((clean + sigma / 255 * torch.randn(clean.shape, generator=g)).clamp(0, 1) * 255) / 255
            yield f"synthetic-{img_name}-s{sigma}", "denoise", noisy, clean, {}, psnr
    for img_name in images:         # super-resolution x4: the centred 256x256 crop, downscaled as Set5 is above
        photo = photos[img_name].convert("RGB")
        w, h = photo.size
        n = min(256, w - w % 32, h - h % 32)
        hr = photo.crop(((w - n) // 2, (h - n) // 2, (w - n) // 2 + n, (h - n) // 2 + n))
        lr = hr.resize((n // 4, n // 4), Image.LANCZOS)
        yield f"synthetic-sr4-{img_name}", "super-resolve", _tensor(lr), _tensor(hr), {"factor": 4}, psnr_y
    for img_name in images:         # noisy inpainting: sigma 25 and half the pixels missing at random
        clean = _tensor(photos[img_name])
        g = torch.Generator().manual_seed(2025)
        mask = (torch.rand(1, 1, *clean.shape[-2:], generator=g) > 0.5).float()
        noisy = torch.round((clean + 25 / 255 * torch.randn(clean.shape, generator=g)).clamp(0, 1) * 255) / 255
        yield f"synthetic-inpaint-{img_name}-s25", "inpaint", noisy * mask, clean, {"mask": mask}, psnr
    if jpeg_images is not None:                  # JPEG cases of the images named, and of no other
        photos = {n: jpeg_source(data, n) for n in jpeg_images}
    elif (data / "denoise-sigma25").is_dir():    # the denoising images' ground truths, for JPEG cases too
        photos.update({n: jpeg_source(data, n) for n in ("F16", "kodim03", "peppers")})
    for img_name in photos:         # JPEG artefacts: the image compressed, decoded, and restored (F = identity)
        clean = _tensor(photos[img_name])
        for q in jpeg_qualities:
            buf = io.BytesIO()
            photos[img_name].save(buf, "JPEG", quality=q)
            yield f"jpeg-{img_name}-q{q}", "jpeg", _tensor(Image.open(buf)), clean, {"quality": q}, psnr


def drawn_sigma(case: str) -> int | None:
    """The std (0-255) the noise of a denoising case was drawn with: 25 for the development images,
    N for synthetic-*-sN; None otherwise."""
    m = re.match(r"synthetic-(?!inpaint|sr4)\w+-s(\d+)", case)
    return int(m[1]) if m else 25 if case.startswith("denoise-") else None


def crop_case(case, size: int | None):
    """A denoising, inpainting or JPEG case cut to its centred ``size`` x ``size`` square (mask included)."""
    name, task, y, gt, kw, metric = case
    if not size or task not in ("denoise", "inpaint", "jpeg"):
        return case
    ch, cw = min(size, y.shape[-2]), min(size, y.shape[-1])
    if "mask" in kw:
        kw = dict(kw, mask=crop_center(kw["mask"], ch, cw))
    return f"{name} (crop {size})", task, crop_center(y, ch, cw), crop_center(gt, ch, cw), kw, metric


def overrides(args) -> dict:
    """The preset's settings changed from the command line (``--sigma-p``, ``--lr``, ``--precision``,
    ``--betas``), by FitConfig field."""
    given = {"reg_noise_std": args.sigma_p, "lr": args.lr, "precision": args.precision,
             "betas": None if args.betas is None else tuple(args.betas)}
    return {field: value for field, value in given.items() if value is not None}


def _follow(seen: dict, d, iteration: int, score: float, name: str, args, t0: float) -> None:
    """Keep in ``seen`` the estimate the watching rule returns and where it first says stop (decision ``d`` at
    ``iteration``, the estimate scoring ``score``); every ``--progress`` iterations print where the run is."""
    if seen["stop"] is None:
        if d.best:
            seen["best_it"], seen["best_score"] = iteration, score
        if d.stop:
            seen["stop"] = iteration
    if args.progress and (iteration + 1) % args.progress == 0:
        print(f"  {name} {iteration + 1}: {score:.2f} (returned {seen['best_it']}: {seen['best_score']:.2f}, "
              f"stop {seen['stop']}) {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def _watched_row(name, task, seen: dict, scores, iterations, r, t0: float) -> dict:
    """The table's row of a run ``r`` to its iteration limit (started at ``t0``) watched by a rule (``seen``, kept
    by :func:`_follow`): where the rule stopped and what it returned, the oracle peak and the quality at the end."""
    per_it = (time.perf_counter() - t0) / max(r.iterations_run, 1)
    peak = int(np.argmax(scores))
    stop_it = seen["stop"] if seen["stop"] is not None else r.iterations_run - 1
    return dict(case=name, task=task, auto_stop=stop_it, returned=seen["best_it"], psnr_before_stretch=None,
                psnr_auto=round(seen["best_score"], 2), oracle_peak=round(scores[peak], 2), oracle_it=iterations[peak],
                gap=round(scores[peak] - seen["best_score"], 2), psnr_fixed=round(scores[-1], 2),
                fixed_iterations=r.iterations_run, paper_iterations=PAPER_ITERS[task],
                seconds_per_iteration=round(per_it, 4), seconds_to_stop=round((stop_it + 1) * per_it, 1),
                device=r.device)


def run_case(name, task, y, gt, kwargs, metric, args) -> tuple[dict, dict]:
    preset = get_preset(task, args.preset, factor=kwargs.get("factor"))      # as restore() gets it (x8: other settings)
    if task == "denoise" and args.stop == "held-out":
        return run_noisy_held_out_case(name, y, gt, metric, args, preset)
    if task == "inpaint" and preset.held_out:
        held_out = run_held_out_case(name, task, y, gt, kwargs, metric, args, preset)
        if held_out is not None:
            return held_out
    preset = preset.for_jpeg_quality(kwargs.get("quality"))     # as restore() does for a JPEG case
    rule = preset.stopping_rule("auto")                  # the rule stop="auto" uses with this preset
    if args.sample:                                       # or watched another way (the fit is the same)
        rule.sample = args.sample
    if preset.fit.loss == "sure":                         # as fit() does: the rule knows the noise level
        rule.noise_level = noise_level(y, preset.fit)
    image_sized = task in ("denoise", "jpeg")            # the observation is an image of the estimate (F = identity)
    if image_sized and rule.residual_power > 0:          # as fit() does: the rule watches the residual to it
        rule.observation = y
    scores: list[float] = []
    iterations: list[int] = []
    losses: list[float] = []
    residuals: list[float] = []     # where the observation is an image of the estimate (denoising, JPEG)
    scores_average: list[float] = []    # of the output average itself, where the estimate is it unclipped
    seen = {"stop": None, "best_it": -1, "best_score": None}
    t0 = time.perf_counter()

    def observe(state):
        s = metric(state.estimate.cpu(), gt)
        scores.append(s)                 # iterations the divergence guard rolls back report nothing
        iterations.append(state.iteration)
        losses.append(state.loss)
        average = state.average         # what fit()'s rule sees (the estimate itself unless unclipped)
        if average is not state.estimate:    # the estimate is the average unclipped: score the average too
            scores_average.append(metric(average.cpu(), gt))
        if image_sized:                  # RMS of the watched average's residual to the observation, grey levels
            residuals.append(255 * residual_rms(average.cpu(), y))
        _follow(seen, rule.update(state.iteration, average), state.iteration, s, name, args, t0)

    r = npr.restore(task, y, preset=args.preset, stop="none", device=args.device, num_iter=args.iterations,
                    seed=args.seed, callback=observe, **kwargs, **overrides(args))
    row = _watched_row(name, task, seen, scores, iterations, r, t0)
    watched = dict(variances=rule.variances, noise_level=rule.noise_level, pool=rule.pool,
                   rule={k: getattr(rule, k) for k in ("window", "patience", "min_iterations", "sample", *REPLAYED)})
    unclipped = {}
    if scores_average:          # the same iterates without unclipping: what unclipping gained
        i = iterations.index(seen["best_it"])
        unclipped = dict(unclip_sigma=round(255 * r.config["unclip_sigma"], 1),
                         psnr_auto_average=round(scores_average[i], 2),
                         oracle_peak_average=round(max(scores_average), 2),
                         oracle_it_average=iterations[int(np.argmax(scores_average))],
                         gap_average=round(max(scores_average) - scores_average[i], 2),
                         unclip_gain=round(seen["best_score"] - scores_average[i], 2))    # of unrounded values
    return dict(row, **unclipped), dict(case=name, iterations=iterations, scores=scores, losses=losses,
                                                    residuals=residuals, scores_average=scores_average, **watched)


def run_held_out_case(name, task, y, gt, kwargs, metric, args, preset) -> tuple[dict, dict] | None:
    """Inpainting with a held-out stop: two runs. ``restore(stop="auto")`` itself (the fit on the
    pixels not held out until the stop, then the stretch on every known pixel), watched by the same
    rule on the same pixels to save the series; and the fixed long run on every known pixel, which
    gives the oracle peak and the quality at the end. "auto stop" is where the held-out fit stopped
    (the stretch follows), "returned" the iteration of the returned estimate (stretch included).
    The saved series ends at the stop: a replay with a longer patience cannot see past it."""
    op = Mask(kwargs["mask"])
    _, rule = _hold_out(op, y * op.mask, None, preset.held_out, seed=args.seed)     # the rule restore() builds
    if rule is None:            # too few known pixels to hold out: restore() keeps the windowed variance
        return None
    scores: list[float] = []
    iterations: list[int] = []
    t0 = time.perf_counter()

    def observe(state):         # the held-out fit only: the stretch after it starts again at the best iteration
        if state.stage:
            return
        scores.append(metric(state.estimate.cpu(), gt))
        iterations.append(state.iteration)
        rule.update(state.iteration, state.estimate)
        if args.progress and (state.iteration + 1) % args.progress == 0:
            print(f"  {name} {state.iteration + 1}: {scores[-1]:.2f} {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)

    auto = npr.restore(task, y, preset=args.preset, stop="auto", device=args.device, callback=observe,
                       seed=args.seed, **kwargs, **overrides(args))
    held = auto.config["held_out"]
    ran = auto.iterations_run - held["stretch"]       # the held-out fit's iterations; the stretch's may follow
    fixed: list[float] = []
    fixed_its: list[int] = []       # iterations the divergence guard rolls back report nothing

    def watch_fixed(state):
        fixed.append(metric(state.estimate.cpu(), gt))
        fixed_its.append(state.iteration)
    long = npr.restore(task, y, preset=args.preset, stop="none", device=args.device, num_iter=args.iterations,
                       seed=args.seed, callback=watch_fixed, **kwargs, **overrides(args))
    peak = int(np.argmax(fixed))
    quality = metric(auto.image, gt)
    before = dict(zip(iterations, scores))[held["best_iteration"]]
    return dict(case=name, task=task, auto_stop=ran - 1, returned=auto.stopped_at,
                psnr_before_stretch=round(before, 2), psnr_auto=round(quality, 2), oracle_peak=round(fixed[peak], 2),
                oracle_it=fixed_its[peak], gap=round(fixed[peak] - quality, 2), psnr_fixed=round(fixed[-1], 2),
                fixed_iterations=long.iterations_run,
                paper_iterations=PAPER_TEXT_ITERS if name.startswith("inpaint-kate-text") else
                PAPER_HOLES_ITERS if name.startswith("inpaint-library-holes") else PAPER_ITERS[task],
                seconds_per_iteration=round(long.seconds / long.iterations_run, 4),
                seconds_to_stop=round(auto.seconds, 1), device=auto.device), \
        dict(case=name, iterations=iterations, scores=scores, errors=rule.errors, fixed_scores=fixed,
             fixed_iterations=fixed_its,
             rule=dict(kind="held-out", held_out=rule.count, patience=rule.patience,
                       min_iterations=rule.min_iterations, best_iteration=held["best_iteration"],
                       stretch=held["stretch"]))


def run_noisy_held_out_case(name, y, gt, metric, args, preset) -> tuple[dict, dict]:
    """Denoising as ``restore(stop="held-out")`` fits it: one run on the observation with 3% of the pixels
    held out and refilled, to the iteration limit, watched by the rule restore() builds (the error of the output
    average on the held-out pixels). Its own quality per iteration gives the peak and the fixed run's quality:
    those are of the fit with pixels held out, compare them with a ``--stop auto`` run for what holding out cost."""
    fitted, rule = hold_out_noisy_pixels(y, replace(preset.fit, **overrides(args)), HELD_OUT_NOISE, seed=args.seed)
    if not isinstance(rule, HeldOutError):
        raise SystemExit(f"error: {name}: too small to hold pixels out")
    scores: list[float] = []
    iterations: list[int] = []
    seen = {"stop": None, "best_it": -1, "best_score": None}
    t0 = time.perf_counter()

    def observe(state):
        s = metric(state.estimate.cpu(), gt)
        scores.append(s)
        iterations.append(state.iteration)
        # as fit() feeds it: the output average
        _follow(seen, rule.update(state.iteration, state.average), state.iteration, s, name, args, t0)

    r = npr.restore("denoise", fitted, preset=args.preset, stop="none", device=args.device, num_iter=args.iterations,
                    seed=args.seed, callback=observe, **overrides(args))
    return _watched_row(name, "denoise", seen, scores, iterations, r, t0), \
        dict(case=name, iterations=iterations, scores=scores, errors=rule.errors,
             rule=dict(kind="held-out", held_out=rule.count, patience=rule.patience,
                       min_iterations=rule.min_iterations, noisy=True))


def _average_cell(row: dict) -> str:
    """The report's cell for a case whose estimate is the output average unclipped: the average itself
    scored at the returned iterate, and its best ("-" for other cases)."""
    if "psnr_auto_average" not in row:
        return "-"
    return (f"{row['psnr_auto_average']}, {row['oracle_peak_average']} ({row['oracle_it_average']}), "
            f"gain {float(row['unclip_gain']):+.2f}")


def replay(series: dict, patience: int, min_iterations: int, tolerance: float, level: float | None,
           tolerance_power: float = 1.0, settled: float = 0.0, residual_power: float = 0.0, rise: float = 0.0,
           settle_lag: int = 0, settle_ratio: float = 0.0, loss_floor: bool = False, min_decrease: float = 0.0):
    """Where the rule would have stopped with other settings (same window), from a saved series:
    the saved windowed variances (or held-out errors) go through the rule's own decision (``judge``),
    with ``loss_floor`` after the saved losses up to each judged iteration (``observe_loss``).

    Returns (stop iteration, returned iteration, quality of the returned estimate).
    """
    q = dict(zip(series["iterations"], series["scores"]))
    its = series["iterations"]
    if series["rule"].get("kind") == "held-out":
        rule = HeldOutError(torch.zeros(1), torch.ones(1), patience=patience, min_iterations=min_iterations)
        watched = series["errors"]
    else:
        rule = WindowedVariance(window=series["rule"]["window"], patience=patience, min_iterations=min_iterations,
                                tolerance=tolerance, tolerance_power=tolerance_power, settled=settled,
                                residual_power=residual_power, rise=rise, settle_lag=settle_lag,
                                settle_ratio=settle_ratio, loss_floor=loss_floor, min_decrease=min_decrease)
        rule.noise_level = level
        watched = series["variances"]
        if residual_power > 0 and not series.get("residuals"):
            raise SystemExit(f"error: --residual-power: the series of {series['case']} has no residuals "
                             "(saved before they were, or not an image-sized observation)")
    residual = dict(zip(its, series.get("residuals") or []))
    first = watched[0][0] if watched else its[-1]
    best_it = max((i for i in its if i < first), default=its[0])   # before the window fills: the latest
    losses = list(zip(its, series["losses"])) if loss_floor else []
    fed = 0
    for it, value in watched:
        if it in residual:
            rule.residual = residual[it] / 255
        while fed < len(losses) and losses[fed][0] <= it:      # as fit() reports them: one per iteration
            rule.observe_loss(losses[fed][1])
            fed += 1
        d = rule.judge(it, value)
        if d.best:
            best_it = it
        if d.stop:
            return it, best_it, q[best_it]
    return its[-1], best_it, q[best_it]


def main_replay(args) -> None:
    files = sorted(Path(args.replay).glob("*.json"))
    if not files:
        raise SystemExit(f"error: no saved series (*.json) in {args.replay}")
    print("| case | auto stop | returned | quality | oracle peak (it) | gap |\n|---|---|---|---|---|---|")
    gaps, used, run = [], 0, 0
    for f in files:
        s = json.loads(f.read_text())
        r = s["rule"]
        level = s.get("noise_level") or args.level
        # each setting: the one given, else the series' own (a series saved before it existed: off, or power 1)
        given = {k: getattr(args, k) for k in REPLAYED}
        if given["settled"] is not None:
            given["settled"] /= 255                                 # given in grey levels
        kw = {k: r.get(k, 1.0 if k == "tolerance_power" else 0) if v is None else v for k, v in given.items()}
        if kw["loss_floor"] and not s.get("losses"):
            raise SystemExit(f"error: --loss-floor: the series of {s['case']} has no losses")
        tolerance = kw.pop("tolerance")
        stop, best, score = replay(s, args.patience or r["patience"], args.min_iterations or r["min_iterations"],
                                   tolerance, level, **kw)
        peak = int(np.argmax(s["scores"]))
        print(f"| {s['case']} | {stop} | {best} | {score:.2f} | {s['scores'][peak]:.2f} ({s['iterations'][peak]}) "
              f"| {s['scores'][peak] - score:.2f} |")
        gaps.append(s["scores"][peak] - score)
        used, run = used + stop + 1, run + s["iterations"][-1] + 1
    print(f"\nworst gap {max(gaps):.2f} dB; iterations to the stops {used} of the runs' {run} ({used / run:.0%})")


def main_masks(args) -> None:
    """The inpainting cases' masks: how much is missing and how large the holes are (the median distance
    from a missing pixel to the nearest known one: 1 for isolated missing pixels, more for large holes)."""
    from scipy import ndimage

    masks = [crop_case(c, args.crop) for c in cases(Path(args.data), (), ()) if c[1] == "inpaint"]
    if not masks:
        raise SystemExit(f"error: no inpainting case in {args.data}")
    print("| case | missing | distance to the nearest known pixel: median | 90th percentile |\n|---|---|---|---|")
    for name, _, _, _, kw, _ in masks:
        missing = kw["mask"][0, 0].numpy() <= 0.5
        d = ndimage.distance_transform_edt(missing)[missing]
        stats = f"{np.median(d):.1f} | {np.percentile(d, 90):.1f}" if d.size else "- | -"
        print(f"| {name} | {missing.mean():.3f} | {stats} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--preset", default="default")
    p.add_argument("--seed", type=int, default=0, help="the fits' seed (network weights, perturbations, held-out "
                   "pixels), as restore(seed=...); the noise and masks of the cases are drawn as always (default: 0)")
    p.add_argument("--stop", choices=("auto", "held-out"), default="auto",
                   help="denoising cases: the preset's rule (auto) or restore(stop='held-out'): 3%% of the pixels "
                        "held out of the fit and the estimate at the minimum of their error returned")
    p.add_argument("--device", default="auto")
    p.add_argument("--only", nargs="*", help="case names (prefixes) to run, in this order")
    p.add_argument("--crop", type=int, help="denoising, inpainting and JPEG cases: centred square crop of this side "
                                            "(faster runs)")
    p.add_argument("--out", default="stopping-results")
    p.add_argument("--sigmas", type=int, nargs="+", default=[15, 25, 50],
                   help="noise levels of the synthetic cases, in 8-bit grey levels (default: %(default)s)")
    p.add_argument("--images", nargs="+", default=["astronaut", "coffee"],
                   help="scikit-image images (skimage.data names) of the synthetic cases (default: %(default)s)")
    p.add_argument("--sigma-p", type=float, help="the preset's input perturbation sigma_p replaced by this one "
                                                 "(0-1 scale; the rule is the preset's)")
    p.add_argument("--lr", type=float, help="the preset's learning rate replaced by this one")
    p.add_argument("--precision", choices=("float32", "bfloat16", "auto"),
                   help="the preset's precision replaced by this one (auto: bfloat16 where fast)")
    p.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"),
                   help="the optimiser's betas replaced by these (each in [0, 1))")
    p.add_argument("--sr-factors", type=int, nargs="+", default=[4], choices=[2, 3, 4, 8],
                   help="super-resolution factors of the Set5 cases (default: %(default)s; the low-resolution image "
                        "is the sharp one, cropped to multiples of 32 (of 96 for x3), reduced by Lanczos)")
    p.add_argument("--jpeg-qualities", type=int, nargs="+", default=[10],
                   help="JPEG qualities (1 to 95) of the synthetic JPEG cases (default: %(default)s)")
    p.add_argument("--jpeg-images", nargs="+", metavar="NAME",
                   help="the JPEG cases made of these images only: ground truths of the data folder (F16, barbara, "
                        "bird, zebra, ...) or scikit-image images (default: --images and the denoising ground truths)")
    p.add_argument("--replay", metavar="DIR", help="no fitting: replay the saved series in DIR (an --out/series "
                                                   "folder) with other rule settings, given below")
    p.add_argument("--patience", type=int)
    p.add_argument("--min-iterations", type=int)
    p.add_argument("--tolerance", type=float)
    p.add_argument("--tolerance-power", type=float, help="with --replay: the rule's tolerance_power "
                   "(default: the series' own; series saved before it existed: 1)")
    p.add_argument("--progress", type=int, metavar="N", help="print the quality to stderr every N iterations")
    p.add_argument("--sample", choices=("pool", "pixels"), help="the watching rule's windowed variance taken on "
                   "pooled estimates or on a pixel sample (default: the preset's; the fit is the same)")
    p.add_argument("--settled", type=float, help="with --replay: the rule's absolute settled threshold, in grey "
                   "levels (default: the series' own; 0: off)")
    p.add_argument("--residual-power", type=float, metavar="P", help="with --replay: the rule watches the windowed "
                   "std divided by the estimate's residual to the observation to the power P (default: the series' "
                   "own; 0: the std itself)")
    p.add_argument("--rise", type=float, help="with --replay: the patience ends the run only once the watched "
                   "quantity has risen this fraction above its minimum (default: the series' own; 0: the patience "
                   "alone)")
    p.add_argument("--settle-lag", type=int, metavar="L", help="with --replay: the settled stop also needs the "
                   "windowed std to be at least --settle-ratio x its value L iterations before (default: the "
                   "series' own; 0: off)")
    p.add_argument("--settle-ratio", type=float, metavar="R", help="with --replay: see --settle-lag")
    p.add_argument("--loss-floor", choices=("on", "off"), help="with --replay: the SURE floor before "
                   "min_iterations (WindowedVariance's loss_floor; default: the series' own, off where it has none)")
    p.add_argument("--min-decrease", type=float, metavar="D", help="with --replay: a new minimum counts (returned "
                   "estimate, patience) only D (a fraction) below the last that counted (default: the series' own; "
                   "0: every one)")
    p.add_argument("--level", type=float, help="noise level for --tolerance where the series has none (0-1 scale)")
    p.add_argument("--masks", action="store_true", help="no fitting: print the size of the inpainting cases' holes")
    args = p.parse_args()
    if args.crop is not None and args.crop < 0:
        raise SystemExit("error: --crop must be positive (0: no crop)")
    if not all(1 <= q <= 95 for q in args.jpeg_qualities):
        raise SystemExit("error: --jpeg-qualities must be between 1 and 95")
    if args.loss_floor is not None:
        args.loss_floor = args.loss_floor == "on"
    if args.residual_power is not None and not args.residual_power >= 0:
        raise SystemExit("error: --residual-power must be 0 or more")
    if args.rise is not None and not args.rise >= 0:
        raise SystemExit("error: --rise must be 0 or more")
    if args.settle_lag is not None and not args.settle_lag >= 0:
        raise SystemExit("error: --settle-lag must be 0 or more")
    if args.settle_ratio is not None and not 0 <= args.settle_ratio < 1:
        raise SystemExit("error: --settle-ratio must be in [0, 1)")
    if args.min_decrease is not None and not 0 <= args.min_decrease < 1:
        raise SystemExit("error: --min-decrease must be in [0, 1)")
    if args.sigma_p is not None and not args.sigma_p >= 0:
        raise SystemExit("error: --sigma-p must be 0 or more")
    if args.lr is not None and not args.lr > 0:
        raise SystemExit("error: --lr must be positive")
    if args.betas is not None:
        try:
            check_betas(args.betas)
        except NeuralPriorError:
            raise SystemExit("error: --betas must be two numbers in [0, 1)") from None
    if args.masks:
        if args.replay:
            raise SystemExit("error: --masks and --replay are two separate uses; give one")
        return main_masks(args)
    if args.replay:
        return main_replay(args)
    from skimage import data as skd

    unknown = [n for n in args.images if not callable(getattr(skd, n, None))]
    if unknown:
        raise SystemExit(f"error: --images: no scikit-image image named {unknown[0]!r}")
    # the cases before anything is written (a bad --jpeg-images name ends the run here)
    todo = list(cases(Path(args.data), args.sigmas, args.images, args.jpeg_qualities, args.jpeg_images,
                      args.sr_factors))
    if args.only:           # the cases named, in the order named
        todo = list({c[0]: c for o in args.only for c in todo if c[0].startswith(o)}.values())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else \
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    rows = []
    md = out / "stopping.md"
    changed = "".join(f", {k} {v}" for k, v in overrides(args).items()) + (f", seed {args.seed}" if args.seed else "") + \
        (f", the variance watched on sample {args.sample}" if args.sample else "")
    md.write_text(f"Machine: {machine}. Preset: {args.preset}{changed}. Fixed long run: {args.iterations} iterations.\n\n"
                  "| case | auto stop | returned | PSNR auto | oracle peak (it) | gap | PSNR fixed | paper its | s/it "
                  "| s to stop | before the stretch | not unclipped: auto, peak (it), gain of unclipping |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for name, task, y, gt, kw, metric in (crop_case(c, args.crop) for c in todo):
        r, series = run_case(name, task, y, gt, kw, metric, args)
        rows.append(r)
        (out / "series").mkdir(exist_ok=True)      # per-iteration quality and windowed variance, for analysis
        (out / "series" / f"{name.split(' ')[0]}.json").write_text(json.dumps(series))
        with md.open("a") as f:
            f.write(f"| {r['case']} | {r['auto_stop']} | {r['returned']} | {r['psnr_auto']} | {r['oracle_peak']} "
                    f"({r['oracle_it']}) | {r['gap']} | {r['psnr_fixed']} | {r['paper_iterations']} "
                    f"| {r['seconds_per_iteration']} | {r['seconds_to_stop']} | {r['psnr_before_stretch'] or '-'} "
                    f"| {_average_cell(r)} |\n")
        with (out / "stopping.csv").open("w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list({k: 0 for r in rows for k in r}))     # unclipped rows have more
            wr.writeheader()
            wr.writerows(rows)
        print(md.read_text().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
