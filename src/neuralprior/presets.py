"""Task presets: which network, which fitting settings, which stopping rule.

Each task has a ``default`` preset (fast: a lighter network, bfloat16 where the hardware
runs it natively, automatic stopping) and a ``paper`` preset that reproduces the original
Deep Image Prior configuration (float32, fixed iteration counts). ``docs/presets.md``
lists them all; :func:`preset_table` prints the same table.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ._validation import NeuralPriorError
from .config import FitConfig
from .networks import DeepDecoder, EncoderDecoder, SkipNet
from .stopping import StoppingRule, make_stopping_rule

TASKS = ("denoise", "inpaint", "super-resolve", "jpeg", "reconstruct", "deblur", "mri", "flash")

# The paper's hourglass (denoising, super-resolution): 2,217,831 parameters.
PAPER_NET: dict = {}
# Lighter hourglass used by the default presets: few channels at full resolution, where the cost is.
LIGHT_NET = dict(channels_down=[16, 32, 64, 128, 128], channels_up=[16, 32, 64, 128, 128], channels_skip=4)
# bfloat16 autocast and channels_last where bfloat16 is native (CUDA, AVX512-BF16/AMX CPUs), else float32 in the
# default memory format (channels_last alone was slower in float32 on an AVX2 CPU, docs/performance.md)
FAST = dict(precision="auto", channels_last="auto")
# Adam's betas (0.8, 0.9) instead of PyTorch's (0.9, 0.999), the paper's: shorter averages of the gradient and its
# square follow the changing gradients sooner (super-resolution up to x4, inpainting, `fast` denoising;
# docs/performance.md)
SHORT_BETAS = (0.8, 0.9)
# more channels at the top levels (inpainting `quality`): better final quality,
# 1.5x (256x256) to 2.3x (512x512) the CPU time per iteration
WIDE_TOP_NET = dict(channels_down=[32, 64, 64, 128, 128], channels_up=[32, 64, 64, 128, 128], channels_skip=8)
# denoising from the noisy image with the SURE loss converges in hundreds of iterations, not thousands:
# a shorter window and patience for its automatic stop (patience 200: a fit can stall for 150 iterations and resume);
# the settled threshold scales as sigma^2.5 (equal to 0.007 sigma at sigma = 25): strong noise is fitted sooner,
# weak noise goes on gaining for longer; a new minimum of the windowed std counts only 5% under the last one that
# counted: a std that edges down while the quality falls no longer keeps the run going (docs/stopping.md)
SURE_STOP = dict(window=20, patience=200, min_iterations=100, tolerance=0.007, tolerance_power=2.5, min_decrease=0.05)
# fast: with SHORT_BETAS the SURE fit peaks sooner and then declines; a settled threshold 2.3 times the default's
# ends it near its peak, after 43 to 83% of the default's iterations on the development images (64% on held-out
# crops, where it misses its peak more often than the default; docs/stopping.md); a new minimum counts only
# 5% lower, as in the default
SURE_STOP_FAST = dict(SURE_STOP, tolerance=0.016)
# inpainting: 5% of the known pixels are held out of the fit; the run stops 500 iterations after the minimum of
# their error (the fit keeps improving slowly for thousands of iterations, then slowly declines: docs/stopping.md),
# then goes on from the estimate at that minimum with every known pixel for a quarter as many iterations again, at
# most 200: most of what holding pixels out cost comes back, and a noisy image that overfits fast is not refitted
HELD_OUT_STOP = dict(fraction=0.05, patience=500, min_iterations=100, stretch=0.25, max_stretch=200)
# denoising with stop="held-out": 3% of the pixel positions are held out of the fit (each replaced, in what the fit
# sees, by its neighbours' mean plus fresh noise of the same level: stopping.hold_out_noisy); the estimate at the
# minimum of their error against the noisy image is returned, the run ends 200 iterations after it. It needs no noise
# level; on strong noise it found peaks the windowed variance misses, at a cost in the fit (docs/stopping.md,
# "Denoising: held-out noisy pixels")
HELD_OUT_NOISE = dict(fraction=0.03, patience=200, min_iterations=20)
# super-resolution x4 (x2 and x3 keep the general rule, see get_preset): the fit has no noise to reproduce and its
# quality rises ever more slowly; the run ends once the estimate has settled, when the windowed std of a fixed sample
# of its pixels (full-resolution pixels, so that the threshold means the same at any image size) falls to SR_SETTLED
# grey levels (docs/stopping.md)
SR_SETTLED = 0.12
SR_STOP = dict(sample="pixels", settled=SR_SETTLED / 255)
# JPEG artefacts: with SHORT_BETAS the fit of strong artefacts peaks within the 2400 iterations, then slowly reproduces
# them; weak ones it goes on gaining from for all 2400. The rule watches the windowed std of a pixel sample divided by
# the residual to the JPEG image to the power 1.5 (a ratio, no level: the right level changes with the artefacts'
# strength), returns the estimate at its minimum, and ends the run once the ratio has turned: 100 iterations past its
# minimum and 5% above it, not before iteration 300 (docs/stopping.md)
JPEG_STOP = dict(sample="pixels", residual_power=1.5, rise=0.05, min_iterations=300, patience=100)
# strong artefacts (the JPEG quality, read from the file or given, at most `max_quality`): the fit peaks within a few
# hundred iterations, then reproduces the blocks while std / residual^1.5 goes on falling to the cap; std / residual^2
# turns there. On weak artefacts that power returns early minima of plateaus, so it is kept for strong ones
# (docs/stopping.md, "JPEG artefacts: strong artefacts")
JPEG_STRONG = dict(max_quality=8, residual_power=2.0)
# the light hourglass with zero padding and nearest upsampling, for SURE denoising: 20% less per iteration than
# reflection padding and bilinear upsampling, at equal or better quality per iteration (docs/performance.md).
# Not for super-resolution (it plateaus 0.7 dB lower) or inpainting (zero padding no faster to its target).
LIGHT_ZERO_NEAREST = dict(LIGHT_NET, pad="zero", upsample="nearest")
# flash/no-flash: the flash image is the input z (3 channels); the paper's upsampling per level
FLASH_UPSAMPLE = ["nearest", "nearest", "bilinear", "bilinear", "bilinear"]


@dataclass
class Preset:
    """A named recipe for one task."""

    name: str
    task: str
    network: str = "skip"                       # "skip" (SkipNet), "lab" (EncoderDecoder) or "decoder" (DeepDecoder)
    network_args: dict = field(default_factory=dict)
    fit: FitConfig = field(default_factory=FitConfig)
    stop: str | int = "auto"                    # "auto", "none" or a number of iterations
    description: str = ""
    stop_args: dict = field(default_factory=dict)   # settings of the "auto" rule (window, patience, min_iterations)
    # inpainting: "auto" holds this fraction of the known pixels out of the fit and stops at the minimum of their
    # error (HeldOutError) instead of watching the windowed variance; with its patience and min_iterations
    held_out: dict = field(default_factory=dict)
    restarts: int = 1                           # fits from different seeds, each with its own stop, averaged
    # JPEG: the "auto" rule's settings that replace stop_args' for strong artefacts, and the highest quality they are for
    strong_jpeg: dict = field(default_factory=dict)

    def stopping_rule(self, stop: str | int | StoppingRule | None = None) -> StoppingRule:
        """The rule ``stop`` names (default: the preset's); ``"auto"`` gets this preset's settings."""
        spec = self.stop if stop is None else stop
        return make_stopping_rule(spec, **(self.stop_args if spec == "auto" else {}))

    def for_jpeg_quality(self, quality: int | None) -> Preset:
        """This preset for an image compressed at JPEG ``quality`` (1 to 100; None: not known, the preset as it
        is): at or below ``strong_jpeg["max_quality"]`` its automatic stop takes the strong-artefact settings."""
        if quality is None or not self.strong_jpeg or quality > self.strong_jpeg["max_quality"]:
            return self
        strong = {k: v for k, v in self.strong_jpeg.items() if k != "max_quality"}
        return replace(self, stop_args=dict(self.stop_args, **strong))

    def build_network(self, out_channels: int, seed: int | None = 0) -> nn.Module:
        """A freshly initialised network; its weights depend only on ``seed`` (the global RNG is untouched)."""
        kinds = {"skip": SkipNet, "lab": EncoderDecoder, "decoder": DeepDecoder}
        args = dict(self.network_args)
        if self.fit.input_kind == "observation":        # z is the observation itself: as many channels
            args["in_channels"] = out_channels
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return kinds[self.network](out_channels=out_channels, **args)


def _presets() -> list[Preset]:
    P = Preset
    sr = dict(network_args=PAPER_NET)
    # denoising from the noisy image itself with the SURE loss; sigma_p grows with the noise variance
    sure = dict(num_iter=1000, lr=0.01, input_kind="observation", loss="sure", sure_epsilon=0.2, reg_noise_std=0.05,
                reg_noise_per_variance=6.0, ema=0.99, **FAST)
    # inpainting from random z: sigma_p 0.01 converges faster than the paper's 0.03, and so do SHORT_BETAS
    inpaint = dict(num_iter=6000, lr=0.01, reg_noise_std=0.01, ema=0.99, betas=SHORT_BETAS, **FAST)
    inverse = dict(num_iter=3000, lr=0.01, reg_noise_std=0.03, ema=0.99)     # deblurring, MRI
    return [
        # denoising (also used for any Gaussian-like noise)
        P("default", "denoise", network_args=LIGHT_ZERO_NEAREST, fit=FitConfig(**sure), stop_args=SURE_STOP,
          description="light hourglass (zero padding, nearest upsampling) fed the noisy image, SURE loss (noise "
                      "level estimated), sigma_p 6 x the noise variance (0.058 at sigma 25, 0.23 at sigma 50), "
                      "bfloat16 where fast, automatic stop"),
        P("fast", "denoise", network_args=LIGHT_ZERO_NEAREST, fit=FitConfig(**sure, betas=SHORT_BETAS),
          stop_args=SURE_STOP_FAST,
          description="the default with Adam betas (0.8, 0.9) and a looser settled stop: fewer iterations (43 "
                      "to 83% on the development images, 64% on held-out crops), 2.1 dB lower to 0.7 dB higher"),
        P("paper", "denoise", network_args=PAPER_NET,
          fit=FitConfig(num_iter=3000, lr=0.01, reg_noise_std=1 / 30, ema=0.99, ema_warmup=False), stop="none",
          description="denoising.ipynb (F16): 3000 it, lr 0.01, sigma_p 1/30, EMA 0.99"),
        P("decoder", "denoise", network="decoder", network_args=dict(channels=64, num_layers=5),
          fit=FitConfig(num_iter=3000, lr=0.01, reg_noise_std=0.0, ema=0.0, input_scale=1.0), stop="auto",
          description="Deep Decoder (Heckel & Hand 2019), under-parameterised"),
        # blind JPEG artefact removal
        P("default", "jpeg", network_args=LIGHT_NET,
          fit=FitConfig(num_iter=2400, lr=0.01, reg_noise_std=1 / 30, ema=0.99, betas=SHORT_BETAS, **FAST),
          stop_args=JPEG_STOP, strong_jpeg=JPEG_STRONG,
          description="light hourglass, Adam betas (0.8, 0.9), bfloat16 where fast, automatic stop on the windowed "
                      "std relative to the residual"),
        P("paper", "jpeg",
          network_args=dict(in_channels=3, channels_down=[8, 16, 32, 64, 128], channels_up=[8, 16, 32, 64, 128],
                            channels_skip=[0, 0, 0, 4, 4]),
          fit=FitConfig(num_iter=2400, lr=0.01, reg_noise_std=1 / 30, ema=0.99, ema_warmup=False), stop="none",
          description="denoising.ipynb (snail): 2400 it, input depth 3, no skips at the top levels"),
        # inpainting
        P("default", "inpaint", network_args=dict(LIGHT_NET, upsample="nearest"), fit=FitConfig(**inpaint),
          held_out=HELD_OUT_STOP,
          description="light hourglass, nearest upsampling, sigma_p 0.01 (converges faster than the paper's 0.03), "
                      "Adam betas (0.8, 0.9), bfloat16 where fast, automatic stop on held-out pixels"),
        P("quality", "inpaint", network_args=dict(WIDE_TOP_NET, upsample="nearest"), fit=FitConfig(**inpaint),
          held_out=HELD_OUT_STOP,
          description="default with 32 channels at full resolution and skip 8: higher PSNR (barbara: the "
                      "published 32.18 dB after 1111 iterations; the default peaks at 31.39), 1.6 to 2.3x the "
                      "time per iteration on a CPU"),
        P("quality-2", "inpaint", network_args=dict(WIDE_TOP_NET, upsample="nearest"), fit=FitConfig(**inpaint),
          held_out=HELD_OUT_STOP, restarts=2,
          description="quality fitted twice (seeds S and S+1), each with its own held-out stop, the two results "
                      "averaged: twice the time, +0.50 to +0.83 dB over the better fit on house, boat and barbara "
                      "(boat: 33.28 dB, above the published 33.04)"),
        P("paper", "inpaint", network_args=dict(channels_skip=128, upsample="nearest"),
          fit=FitConfig(num_iter=6001, lr=0.01, reg_noise_std=0.03, ema=0.0, guard=False), stop="none",
          description="inpainting.ipynb (kate, text masks): 6001 it, skip 128, nearest"),
        P("paper-restoration", "inpaint", network_args=PAPER_NET,
          fit=FitConfig(num_iter=11000, lr=0.001, reg_noise_std=0.03, ema=0.0), stop="none",
          description="restoration.ipynb (barbara, 50% random pixels): 11000 it at lr 0.001"),
        # super-resolution (iteration counts and sigma_p depend on the factor, see get_preset)
        # SHORT_BETAS up to x4 (x8 keeps PyTorch's, see get_preset)
        P("default", "super-resolve", network_args=LIGHT_NET,
          fit=FitConfig(num_iter=2000, lr=0.01, reg_noise_std=0.03, ema=0.99, betas=SHORT_BETAS, **FAST),
          stop_args=SR_STOP,
          description="light hourglass, Adam betas (0.8, 0.9) up to x4 (the published x4 PSNR on all of Set5, "
                      "in 0.4 to 0.7 times the iterations of PyTorch's betas where those get there; x8 keeps "
                      "PyTorch's), bfloat16 where fast, automatic stop (at x4 also once the estimate has "
                      "settled)"),
        P("paper", "super-resolve", fit=FitConfig(num_iter=2000, lr=0.01, reg_noise_std=0.03, ema=0.0, guard=False),
          stop="none", description="super-resolution.ipynb: x4 2000 it sigma_p 0.03; x8 4000 it sigma_p 0.05", **sr),
        # plain reconstruction: fit the image itself (the lab's first experiment)
        P("default", "reconstruct", network_args=LIGHT_NET,
          fit=FitConfig(num_iter=2000, lr=0.01, reg_noise_std=0.0, ema=0.0, guard=True, **FAST), stop="none",
          description="light hourglass, no perturbation, no averaging: the network fits the image"),
        P("paper", "reconstruct", network_args=PAPER_NET,
          fit=FitConfig(num_iter=3000, lr=0.01, reg_noise_std=0.0, ema=0.0), stop="none",
          description="the paper's hourglass fitting the image, 3000 it"),
        P("lab", "reconstruct", network="lab", network_args=dict(width=64, skip_channels=8),
          fit=FitConfig(num_iter=1000, lr=0.01, reg_noise_std=0.0, ema=0.0), stop="none",
          description="the lab's encoder-decoder with two skip connections"),
        # deblurring (F = convolution with a known kernel) and compressed-sensing MRI (F = k-space mask after an
        # orthonormal FFT; one magnitude channel): not in the paper, so its denoising settings
        *[p for task, what in (("deblur", "deblurring"), ("mri", "MRI")) for p in (
            P("default", task, network_args=LIGHT_NET, fit=FitConfig(**inverse, **FAST),
              description="light hourglass, bfloat16 where fast, automatic stop"),
            P("paper", task, network_args=PAPER_NET, fit=FitConfig(**inverse, ema_warmup=False), stop="none",
              description=f"no {what} in the paper: its hourglass and settings, 3000 it, float32"))],
        # flash/no-flash: z = the flash image, the target the no-flash image, F = identity
        P("default", "flash", network_args=dict(LIGHT_NET, in_channels=3, upsample=FLASH_UPSAMPLE),
          fit=FitConfig(num_iter=601, lr=0.1, reg_noise_std=0.0, ema=0.0, **FAST), stop="none",
          description="light hourglass on the flash image, the paper's lr and iterations"),
        P("paper", "flash", network_args=dict(in_channels=3, upsample=FLASH_UPSAMPLE),
          fit=FitConfig(num_iter=601, lr=0.1, reg_noise_std=0.0, ema=0.0, guard=False), stop="none",
          description="flash-no-flash.ipynb (cave01): 601 it, lr 0.1, sigma_p 0, z = flash image"),
    ]


PRESETS = _presets()


def preset_names(task: str) -> list[str]:
    return [p.name for p in PRESETS if p.task == task]


def get_preset(task: str, name: str = "default", *, factor: int | None = None) -> Preset:
    """The preset ``name`` for ``task`` (a copy: changing it changes nothing else).

    For super-resolution the paper's iteration count and sigma_p depend on ``factor``
    (x8: 4000 iterations, sigma_p 0.05); x8 also keeps PyTorch's Adam betas: on butterfly x8 (one
    run of 1500 iterations) its fit got higher with them than with x4's (0.8, 0.9) (docs/performance.md),
    and the windowed variance's general settings, without the settled stop measured up to x4. The
    settled stop is for x4 only: x2 and x3 keep the general rule (at x2 it ended runs early).
    """
    if task not in TASKS:
        raise NeuralPriorError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    for p in PRESETS:
        if p.task == task and p.name == name:
            p = replace(p, fit=replace(p.fit), network_args=dict(p.network_args), stop_args=dict(p.stop_args),
                        held_out=dict(p.held_out), strong_jpeg=dict(p.strong_jpeg))
            if task == "super-resolve" and factor is not None and factor >= 8:
                p.fit = replace(p.fit, num_iter=4000, reg_noise_std=0.05, betas=FitConfig().betas)
                p.stop_args = {}                        # the settled stop is for x4 only; x8: the general rule, pooled
            elif task == "super-resolve" and factor is not None and factor != 4:
                # measured at x2 on Set5, x4's settled stop ended two of four runs 0.9 and 1.3 dB early: x2 and x3
                # keep the general rule on the pixel sample (docs/stopping.md, "Super-resolution x2")
                p.stop_args.pop("settled", None)
            return p
    raise NeuralPriorError(f"unknown preset {name!r} for {task}; available: {', '.join(preset_names(task))}")


def _setting(key: str, value) -> str:
    """A stopping setting as the preset table shows it (the absolute settled threshold in grey levels)."""
    if isinstance(value, str):
        return value
    return f"{value * 255:g} grey levels" if key == "settled" else f"{value:g}"


def preset_table() -> str:
    """Markdown table of every preset and its values."""
    rows = ["| task | preset | network | input z / loss | iterations | lr | sigma_p | EMA | precision | stop | notes |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in PRESETS:
        args = ", ".join(f"{k}={v}" for k, v in p.network_args.items()) or "paper defaults"
        f = p.fit
        sigma_p = (f"{f.reg_noise_per_variance:g} x noise variance" if f.reg_noise_per_variance
                   else f"{f.reg_noise_std:.4g}")
        stop = f"{p.stop} ({', '.join(f'{k} {_setting(k, v)}' for k, v in p.stop_args.items())})" if p.stop_args else p.stop
        if p.held_out:
            stop = f"{p.stop} (held-out {', '.join(f'{k} {v:g}' for k, v in p.held_out.items())})"
        if p.strong_jpeg:
            strong = ", ".join(f"{k} {_setting(k, v)}" for k, v in p.strong_jpeg.items() if k != "max_quality")
            stop += f"; JPEG quality at most {p.strong_jpeg['max_quality']}: {strong}"
        iterations = f"{f.num_iter}" + (f" x {p.restarts} fits, averaged" if p.restarts > 1 else "")
        rows.append(f"| {p.task} | {p.name} | {p.network} ({args}) | {f.input_kind} / {f.loss} | {iterations} "
                    f"| {f.lr:g} | {sigma_p} | {f.ema:g} | {f.precision} | {stop} | {p.description} |")
    return "\n".join(rows)
