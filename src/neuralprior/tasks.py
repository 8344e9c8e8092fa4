"""The tasks users ask for: denoise, inpaint, super_resolve, remove_jpeg_artifacts, reconstruct,
deblur, mri (compressed-sensing MRI) and flash_no_flash.

Each picks a preset (network + :class:`FitConfig` + stopping rule), builds the
measurement operator and calls :func:`neuralprior.fit`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ._validation import NeuralPriorError, check_image, check_jpeg_quality, check_positive_int
from .fit import FitResult, _noise_levels_for, fit
from .config import FitConfig
from .metrics import psnr
from .operators import MRI, Blur, Downsample, Identity, Mask, cartesian_mask, parse_blur, radial_mask
from .presets import HELD_OUT_NOISE, get_preset
from .stopping import FixedIterations, HeldOutError, held_out_pixels, hold_out_noisy, split_mask

_FIT_FIELDS = {f.name for f in fields(FitConfig)}


def _operator(task: str, y: torch.Tensor, mask, factor, kernel=None):
    if task == "inpaint":
        if mask is None:
            raise NeuralPriorError("inpainting needs a mask (1 = known pixel, 0 = missing)")
        m = torch.as_tensor(mask, dtype=torch.float32)
        m = m[None, None] if m.ndim == 2 else (m[None] if m.ndim == 3 else m)
        if tuple(m.shape[-2:]) != tuple(y.shape[-2:]):
            raise NeuralPriorError(f"mask is {m.shape[-1]}x{m.shape[-2]} but the image is {y.shape[-1]}x{y.shape[-2]}")
        if not (m > 0.5).any():
            raise NeuralPriorError("mask has no known pixel")
        return Mask(m)
    if task == "super-resolve":
        if kernel is not None and not isinstance(kernel, str):
            raise NeuralPriorError("super-resolution takes the name of its downsampling kernel: "
                                   "lanczos2, lanczos3, bicubic or box")
        return Downsample(check_positive_int(factor, "factor"), kernel or "lanczos2")
    if task == "deblur":
        if kernel is None:
            raise NeuralPriorError("deblurring needs the blur kernel: a 2-D array or a spec such as 'gaussian:2'")
        return Blur(parse_blur(kernel) if isinstance(kernel, str) else kernel)
    if task == "mri":
        raise NeuralPriorError("MRI reconstruction takes k-space, not an image: use neuralprior.mri()")
    return Identity()


def _configured_preset(task: str, name: str, overrides: dict, *, factor: int | None = None):
    """The preset ``name`` for ``task`` with ``overrides`` (FitConfig fields) applied to its fit settings."""
    unknown = set(overrides) - _FIT_FIELDS
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    p = get_preset(task, name, factor=factor)
    overrides = dict(overrides)
    if "loss" in overrides and "input_kind" not in overrides:
        if overrides["loss"] == "sure":             # SURE needs the noisy image as the network input
            overrides["input_kind"] = "observation"
        elif p.fit.input_kind == "observation":     # other losses would let the network copy it: random z
            overrides["input_kind"] = "noise"
    if "reg_noise_per_variance" not in overrides and (
            "reg_noise_std" in overrides or overrides.get("loss", p.fit.loss) != "sure"):
        overrides["reg_noise_per_variance"] = 0.0      # a given sigma_p, or no noise level to scale it with
    p.fit = replace(p.fit, **overrides)
    return p


def restore(task: str, image: torch.Tensor, *, mask: torch.Tensor | None = None, factor: int | None = None,
            kernel: torch.Tensor | str | None = None, flash: torch.Tensor | None = None, preset: str = "default",
            stop: str | int | None = None, seed: int | None = 0, device="auto",
            x_true: torch.Tensor | None = None, callback=None, callback_every: int = 1,
            time_limit: float | None = None, checkpoint=None, checkpoint_every: int = 100, resume=None,
            restarts: int | None = None, quality: int | None = None, **overrides) -> FitResult:
    """Restore ``image`` (N, C, H, W) or (C, H, W) in [0, 1] for ``task`` with ``preset``.

    ``mask``: inpainting; ``factor``: super-resolution; ``kernel``: deblurring (a 2-D array or a
    :func:`~neuralprior.operators.parse_blur` spec), or super-resolution's downsampling kernel
    (``"lanczos2"``, the paper's and the default; ``"lanczos3"``, as Pillow's ``LANCZOS`` resize;
    ``"bicubic"``; ``"box"``); ``flash``: the flash image of flash/no-flash; ``quality``: JPEG
    artefacts: the JPEG quality (1 to 100) the image was compressed at, where known
    (:func:`~neuralprior.io.jpeg_quality` reads it from a file): on strong artefacts the automatic
    stop takes other settings (:meth:`~neuralprior.presets.Preset.for_jpeg_quality`).
    ``overrides`` are :class:`FitConfig` fields (``num_iter``, ``lr``, ``reg_noise_std``, ``loss``,
    ``tv_weight``, ``tikhonov_weight``, ...).
    ``stop`` replaces the preset's stopping rule (``"auto"``, ``"none"`` or N iterations; denoising also
    ``"held-out"``: 3% of the pixels are held out of the fit, replaced by their neighbours' mean plus fresh
    noise, and the estimate at the minimum of their error is returned, see
    :func:`~neuralprior.stopping.hold_out_noisy`; the result's ``config["held_out"]`` says how many). Inpainting
    with ``"auto"`` and a preset that holds pixels out (``default``, ``quality``) fits all but 5% of the
    known pixels and stops on their error (:class:`~neuralprior.stopping.HeldOutError`), then goes on
    from the estimate at their minimum with every known pixel for a short stretch (a quarter of the
    iterations to that minimum, at most 200); the result's ``config["held_out"]`` says how many pixels,
    the iteration of that minimum and the stretch.
    ``restarts``: fit this many times from different seeds (``seed``, ``seed + 1``, ...), each with
    its own stop, and return the average of their results (default: the preset's, 1). Their errors
    differ, so the average is better than each fit where the fits level off (inpainting); each
    costs a whole fit (docs/performance.md). See :func:`average_of_fits` for what the result holds.
    ``x_true`` only logs PSNR; it never changes the result. ``checkpoint``/``resume``: see :func:`fit`.
    """
    if stop == "held-out" and task != "denoise":
        raise NeuralPriorError(f"stop='held-out' is for denoising (inpainting's automatic stop holds known pixels "
                               f"out already), not {task}")
    p = _configured_preset(task, preset, overrides, factor=factor)
    if quality is not None:
        if task != "jpeg":
            raise NeuralPriorError(f"quality is a JPEG quality, for the jpeg task only (not {task})")
        p = p.for_jpeg_quality(check_jpeg_quality(quality))
    n = _restart_count(p, restarts, checkpoint, resume)
    y = check_image(image, "image").float()
    op = _operator(task, y, mask, factor, kernel)
    latent = _flash_input(flash, y, p.network_args.get("in_channels", 32)) if task == "flash" else None

    def once(seed, callback, time_limit):
        return _fit_once(p, task, y, op, stop, seed=seed, latent=latent, x_true=x_true, device=device,
                         callback=callback, callback_every=callback_every, time_limit=time_limit,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume)
    result = once(seed, callback, time_limit) if n == 1 else \
        average_of_fits(once, n, seed=seed, callback=callback, time_limit=time_limit, x_true=x_true)
    if quality is not None:
        result.config["jpeg_quality"] = quality
    return result


def _restart_count(p, restarts, checkpoint, resume) -> int:
    """How many fits to average: ``restarts``, or the preset's; refused beside a checkpoint or resume."""
    n = p.restarts if restarts is None else check_positive_int(restarts, "restarts")
    if n > 1 and (checkpoint is not None or resume is not None):
        raise NeuralPriorError("checkpoint and resume save a single fit: use them without restarts")
    return n


def _fit_once(p, task: str, y: torch.Tensor, op, stop, *, seed, x_true, device, callback, callback_every,
              time_limit, checkpoint, checkpoint_every, resume, latent) -> FitResult:
    """One fit of :func:`restore` with the configured preset ``p`` (a fresh network from ``seed``)."""
    cfg = p.fit
    rule = p.stopping_rule("auto" if stop == "held-out" else stop)
    if task == "denoise" and stop == "held-out":
        y, rule = hold_out_noisy_pixels(y, cfg, HELD_OUT_NOISE, seed, rule)
    if task == "inpaint":
        y = y * op.mask
        every = (y, op)             # the whole problem, before pixels are held out of the first fit
        if p.held_out and (p.stop if stop is None else stop) == "auto":
            op, rule = _hold_out(op, y, rule, p.held_out, seed)
            y = y * op.mask
    held_out = isinstance(rule, HeldOutError)
    net = p.build_network(out_channels=y.shape[1], seed=seed)
    result = fit(y, op, net=net, config=cfg, stop=rule, x_true=x_true, seed=seed,
                 device=device, callback=callback, callback_every=callback_every, time_limit=time_limit,
                 checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, latent=latent,
                 keep_best_state=held_out and p.held_out.get("stretch", 0) > 0)
    if held_out and task == "denoise":
        result.config["held_out"] = dict(pixels=rule.count, fraction=HELD_OUT_NOISE["fraction"], patience=rule.patience,
                                         best_iteration=result.stopped_at, stretch=0, noisy=True)
    elif task == "denoise" and stop == "held-out":
        result.reason += f"; the image is too small to hold pixels out (fewer than {MIN_HELD_OUT}): the automatic stop"
    elif held_out:
        result = _after_held_out_stop(result, rule, p.held_out, *every, net, cfg, x_true=x_true, device=device,
                                      callback=callback, callback_every=callback_every, time_limit=time_limit)
    return result


def average_of_fits(run, n: int, *, seed: int | None = 0, callback=None, time_limit: float | None = None,
                    x_true: torch.Tensor | None = None) -> FitResult:
    """The average of ``n`` fits, ``run(seed, callback, time_limit)`` with seeds ``seed``, ``seed + 1``, ...

    The result's ``image`` is the mean of the fits' images; ``history`` holds the fits' histories
    one after the other, and ``config["restarts"]`` says, per fit, its seed, where its history
    starts, its returned iteration (counted within the fit), iterations, seconds, reason, and, with
    ``x_true``, the PSNR of its image. ``stopped_at`` is -1: no single iterate is returned.
    ``callback`` sees each fit's states with ``stage`` "fit1", "fit2", ... ("fit2-stretch" during
    the second fit's stretch after a held-out stop). ``time_limit`` is for all the fits together.
    A later fit that is interrupted or cut by the time limit is left out of the average (its
    iterations still count); when the first one is, it is returned alone.
    """
    done: list[FitResult] = []
    runs: list[FitResult] = []
    spent, note = 0.0, ""
    for k in range(n):
        left = None if time_limit is None else time_limit - spent
        if left is not None and left <= 0:
            note = f"; the time limit left no time for fit {k + 1} of {n}"
            break
        cb = None if callback is None else (
            lambda s, k=k: callback(replace(s, stage=f"fit{k + 1}" + (f"-{s.stage}" if s.stage else ""))))
        r = run(None if seed is None else seed + k, cb, left)
        runs.append(r)
        spent += r.seconds
        if r.interrupted or (left is not None and r.seconds >= left):
            why = "interrupted" if r.interrupted else "cut by the time limit"
            if done:
                note = f"; fit {k + 1} of {n} was {why} and is left out"
                break
            done.append(r)
            note = f"; fit 1 of {n} was {why}: returned alone"
            break
        done.append(r)
    first = done[0]
    starts = [0]
    for r in runs[:-1]:
        starts.append(starts[-1] + len(r.history.get("loss", [])))
    truth = None if x_true is None else check_image(x_true, "x_true").float().cpu()
    fits = []
    for k, r in enumerate(runs):
        f = dict(seed=r.seed, start=starts[k], stopped_at=r.stopped_at, iterations_run=r.iterations_run,
                 seconds=r.seconds, reason=r.reason, averaged=k < len(done))
        if "held_out" in r.config:
            f["held_out"] = r.config["held_out"]
        if truth is not None:
            f["psnr"] = psnr(r.image, truth.expand_as(r.image))
        fits.append(f)
    history = {key: [v for r in runs for v in r.history.get(key, [])] for key in first.history}
    averaged = len(done) > 1
    image = torch.stack([r.image for r in done]).mean(0) if averaged else first.image
    reason = (f"average of {len(done)} fits: " if averaged else "") + \
        "; ".join(f"fit {k + 1}: {r.reason}" for k, r in enumerate(runs)) + note
    config = dict(first.config, restarts=dict(requested=n, averaged=len(done), fits=fits))
    return replace(first, image=image, stopped_at=-1 if averaged else first.stopped_at,
                   iterations_run=sum(r.iterations_run for r in runs), reason=reason, seconds=spent,
                   history=history, config=config, interrupted=any(r.interrupted for r in runs), best_state=None)


def _after_held_out_stop(result: FitResult, rule: HeldOutError, settings: dict, y, op, net, cfg: FitConfig, *,
                         time_limit=None, **kw) -> FitResult:
    """The stretch on every known pixel (``y``, ``op``: the whole problem) after a fit stopped by
    ``rule`` (made by :func:`_hold_out` with ``settings``, run with ``keep_best_state=True``); the
    result's ``config["held_out"]`` says how many pixels the first fit did not see, and what followed."""
    info = dict(pixels=rule.count, fraction=settings["fraction"], patience=rule.patience,
                best_iteration=result.stopped_at, stretch=0)
    stretch = settings.get("stretch", 0)
    n = min(int(stretch * (result.stopped_at + 1)), settings["max_stretch"]) if stretch else 0
    if n > 0:
        result = _fit_every_known_pixel(result, y, op, net, cfg, n, seed=result.seed, time_limit=time_limit, **kw)
        info["stretch"] = result.stopped_at - info["best_iteration"]
    result.best_state = None
    result.config["held_out"] = info
    return result


def _fit_every_known_pixel(first: FitResult, y, op, net, cfg: FitConfig, iterations: int, *, time_limit, **kw):
    """Go on from the held-out fit's best estimate for ``iterations`` more, fitting every known pixel.

    The fit on 95% of the known pixels trails the fit on all of them (up to half a dB on a clean
    image, docs/stopping.md); its held-out pixels say when to stop, then a short stretch on all the
    known pixels from the state of the chosen estimate takes back most of that. ``first`` is
    returned as it is when it was interrupted or its time is up.
    """
    state = first.best_state
    if first.interrupted or (time_limit is not None and first.seconds >= time_limit):
        return first
    if state is None:                   # resumed from a checkpoint made before the stretch existed
        first.reason += "; no stretch on every known pixel (the checkpoint holds no state of the best estimate)"
        return first
    b = first.stopped_at
    # the running loss average was measured on fewer pixels: restarted, so the divergence guard does not misfire
    state = dict(state, history={k: v[:b + 1] for k, v in first.history.items()}, loss_avg=None)
    end = b + 1 + iterations
    limit = None if time_limit is None else state["elapsed"] + time_limit - first.seconds
    callback = kw.pop("callback", None)
    if callback is not None:        # told apart from the held-out fit's steps of the same numbers
        kw["callback"] = lambda s: callback(replace(s, stage="stretch", num_iter=end))
    r = fit(y, op, net=net, config=replace(cfg, num_iter=max(cfg.num_iter, end)), stop=FixedIterations(end),
            resume=state, time_limit=limit, **kw)
    done = r.iterations_run - (b + 1)
    r.iterations_run = first.iterations_run + done
    r.seconds = first.seconds + r.seconds - state["elapsed"]
    if not r.interrupted:
        more = "" if done == iterations else f" ({r.reason})"      # cut short: by the time limit
        r.reason = f"{first.reason}; then {done} iterations on every known pixel from iteration {b}{more}"
    return r


MIN_HELD_OUT = 64
"""Fewest held-out pixels for :class:`~neuralprior.stopping.HeldOutError`; a mask with fewer known
pixels than that over the held-out fraction keeps them all and the windowed-variance rule."""


def _hold_out(op: Mask, y: torch.Tensor, rule, settings: dict, seed: int | None):
    """(operator on the fitted pixels, :class:`HeldOutError` on the rest) for an inpainting ``op``;
    ``(op, rule)`` unchanged when too few pixels would be held out."""
    settings = {k: v for k, v in settings.items() if k not in ("stretch", "max_stretch")}
    fitted, held = split_mask(op.mask, settings.pop("fraction"), 0 if seed is None else seed)
    if held_out_pixels(held) < MIN_HELD_OUT:
        return op, rule
    return Mask(fitted), HeldOutError(y, held, **settings)


def hold_out_noisy_pixels(y: torch.Tensor, cfg: FitConfig, settings: dict, seed: int | None, rule=None):
    """``(observation to fit, HeldOutError)`` for denoising ``y`` with a few noisy pixels held out
    (:func:`~neuralprior.stopping.hold_out_noisy`, ``settings["fraction"]`` of them, refilled at the noise level
    ``cfg`` gives or estimated); ``(y, rule)`` unchanged when fewer than :data:`MIN_HELD_OUT` would be held out."""
    settings = dict(settings)
    _, before = _noise_levels_for(y, cfg)          # the std before clipping, as fit() finds it
    fitted, held = hold_out_noisy(y, settings.pop("fraction"), before, 0 if seed is None else seed)
    if held_out_pixels(held) < MIN_HELD_OUT:
        return y, rule
    return fitted, HeldOutError(y, held, **settings)


def _flash_input(flash, y: torch.Tensor, channels: int) -> torch.Tensor:
    """The flash image as the network input z, checked against the no-flash image ``y``."""
    if flash is None:
        raise NeuralPriorError("flash/no-flash needs the flash image (flash=...)")
    z = check_image(torch.as_tensor(flash), "flash image").float()
    if tuple(z.shape[-2:]) != tuple(y.shape[-2:]):
        raise NeuralPriorError(f"flash image is {z.shape[-1]}x{z.shape[-2]} but the no-flash image is "
                               f"{y.shape[-1]}x{y.shape[-2]}; they must be the same size")
    if z.shape[1] != channels:          # a grayscale flash image for a 3-channel input: repeat it
        z = z.mean(1, keepdim=True).expand(-1, channels, -1, -1).contiguous()
    return z


def denoise(image: torch.Tensor, **kwargs) -> FitResult:
    """Remove noise from ``image``. See :func:`restore` for the options.

    Examples
    --------
    >>> import torch, neuralprior
    >>> noisy = torch.rand(1, 3, 32, 32)
    >>> neuralprior.denoise(noisy, num_iter=2, stop="none", device="cpu").image.shape
    torch.Size([1, 3, 32, 32])
    """
    return restore("denoise", image, **kwargs)


def inpaint(image: torch.Tensor, mask: torch.Tensor, **kwargs) -> FitResult:
    """Fill the pixels where ``mask`` is 0 (``mask`` is 1 on known pixels)."""
    return restore("inpaint", image, mask=mask, **kwargs)


def super_resolve(image: torch.Tensor, factor: int, **kwargs) -> FitResult:
    """Upscale ``image`` by an integer ``factor``; the result is ``factor`` times larger.

    ``kernel``: how ``image`` was made from the sharp one (see :class:`~neuralprior.operators.Downsample`):
    ``"lanczos2"`` (the paper's model, the default), ``"lanczos3"`` (what Pillow's ``LANCZOS``
    resize does), ``"bicubic"`` or ``"box"``.
    """
    return restore("super-resolve", image, factor=factor, **kwargs)


def remove_jpeg_artifacts(image: torch.Tensor, **kwargs) -> FitResult:
    """Blind removal of JPEG compression artefacts."""
    return restore("jpeg", image, **kwargs)


def reconstruct(image: torch.Tensor, **kwargs) -> FitResult:
    """Fit the image itself (no degradation): watch the network learn it, then its noise."""
    return restore("reconstruct", image, **kwargs)


def deblur(image: torch.Tensor, kernel: torch.Tensor | str, **kwargs) -> FitResult:
    """Remove a known blur: F(x) = k * x (same size, reflected borders).

    ``kernel`` is a 2-D array (normalised to sum 1) or a spec for
    :func:`~neuralprior.operators.parse_blur`: ``"gaussian:2"``, ``"box:5"``, ``"motion:9,30"``
    or a kernel file. See :func:`restore` for the other options.

    >>> import torch, neuralprior
    >>> blurred = torch.rand(1, 3, 32, 32)
    >>> neuralprior.deblur(blurred, "gaussian:1", num_iter=2, stop="none", device="cpu").image.shape
    torch.Size([1, 3, 32, 32])
    """
    return restore("deblur", image, kernel=kernel, **kwargs)


def flash_no_flash(image: torch.Tensor, flash: torch.Tensor, **kwargs) -> FitResult:
    """Flash/no-flash: the network input z is the ``flash`` image, the target the no-flash ``image``.

    The result has the colours and light of the no-flash photo with the low noise and the
    detail of the flash photo. Both images must have the same size. See :func:`restore`.
    """
    return restore("flash", image, flash=flash, **kwargs)


@dataclass
class MRIResult(FitResult):
    """:class:`FitResult` of :func:`mri`, with the zero-filled baseline and the mask used."""

    zero_filled: torch.Tensor | None = None     # (1, 1, H, W) |IFFT2(M ⊙ k)|, the naive answer, same units as image
    mask: torch.Tensor | None = None            # (H, W) k-space mask (centred layout), 1 = sampled
    scale: float = 1.0                          # measured k-space was divided by this before fitting


def _as_tensor(data) -> torch.Tensor:
    if isinstance(data, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(data))
    if isinstance(data, torch.Tensor):
        return data.detach().cpu()
    raise TypeError(f"MRI data must be a numpy array or a torch.Tensor, got {type(data).__name__}")


def _mri_data(data) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(complex k-space (H, W) in the centred layout, the image it was simulated from or None)."""
    t = _as_tensor(data)
    if t.is_complex():
        while t.ndim > 2 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 2:
            raise NeuralPriorError(f"k-space must be a 2-D complex array (H, W), got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise NeuralPriorError("k-space holds NaN or infinite values")
        return t.to(torch.complex64), None
    x = t if t.ndim != 2 else t[None, None]
    x = check_image(x, "MRI image").float()
    if x.shape[0] != 1 or x.shape[1] not in (1, 3):
        raise NeuralPriorError(f"MRI image must be one grayscale or RGB image, got shape {tuple(x.shape)}")
    x = x.mean(1, keepdim=True)                      # magnitude image: one channel
    return torch.fft.fftshift(torch.fft.fft2(x[0, 0], norm="ortho")), x


def mri(data, *, mask: torch.Tensor | np.ndarray | None = None, sampling: str = "cartesian",
        acceleration: float = 4.0, center_fraction: float = 0.08, preset: str = "default",
        stop: str | int | None = None, seed: int | None = 0, device="auto", x_true: torch.Tensor | None = None,
        callback=None, callback_every: int = 1, time_limit: float | None = None, checkpoint=None,
        checkpoint_every: int = 100, resume=None, restarts: int | None = None, **overrides) -> MRIResult:
    """Compressed-sensing MRI: a magnitude image from undersampled k-space, F(x) = M ⊙ FFT2(x).

    Parameters
    ----------
    data : measured k-space, a complex (H, W) array with the zero frequency at the centre
        (``fftshift(fft2(image, norm="ortho"))``), or, to simulate, a real image in [0, 1]
        ((H, W), (C, H, W) or (1, C, H, W); colour is averaged) whose k-space is then sampled.
    mask : (H, W) k-space mask, 1 = sampled, centred layout. Default: for measured k-space its
        non-zero entries; for a simulation, ``sampling`` at ``acceleration``.
    sampling : ``"cartesian"`` (random full lines, centre kept: :func:`~neuralprior.operators.cartesian_mask`)
        or ``"radial"`` (spokes: :func:`~neuralprior.operators.radial_mask`).
    acceleration : undersampling factor R; about 1/R of k-space is measured.
    center_fraction : Cartesian only: the fraction of central lines always measured.
    overrides, preset, stop, restarts, ... : as in :func:`restore` (``restarts``: the same k-space mask,
        networks from seeds ``seed``, ``seed + 1``, ...; :func:`average_of_fits`).

    The network output is a real, non-negative image (one channel). Measured k-space is
    divided by ``result.scale`` so that the zero-filled magnitude peaks at 0.9; a simulation
    keeps the units of the image. ``result.zero_filled`` is the naive reconstruction.

    >>> import torch, neuralprior
    >>> r = neuralprior.mri(torch.rand(32, 32), acceleration=4, num_iter=2, stop="none", device="cpu")
    >>> r.image.shape, r.zero_filled.shape
    (torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 32, 32]))
    """
    p = _configured_preset("mri", preset, overrides)     # unknown preset or option: error before any work
    n = _restart_count(p, restarts, checkpoint, resume)
    cfg = p.fit
    kspace, image = _mri_data(data)
    h, w = kspace.shape
    if mask is not None:
        m = _as_tensor(mask)
        m = m.abs() if m.is_complex() else m.float()
        while m.ndim > 2 and m.shape[0] == 1:
            m = m[0]
        if tuple(m.shape) != (h, w):
            raise NeuralPriorError(f"k-space mask has shape {tuple(m.shape)} but k-space is {(h, w)}")
    elif image is None:
        m = (kspace != 0).float()
    elif sampling == "cartesian":
        gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        m = cartesian_mask((h, w), acceleration, center_fraction, generator=gen)
    elif sampling == "radial":
        m = radial_mask((h, w), acceleration)
    else:
        raise NeuralPriorError(f"unknown sampling {sampling!r}; use cartesian or radial")
    op = MRI(m)
    measured = kspace * op.mask
    zero_filled = op.zero_filled(measured).abs()
    scale = 1.0
    if image is None:
        peak = float(zero_filled.max())
        scale = peak / 0.9 if peak > 0 else 1.0
    y = torch.stack([measured.real, measured.imag])[None].float() / scale

    def once(seed, callback, time_limit):
        return fit(y, op, net=p.build_network(out_channels=1, seed=seed), config=cfg, stop=p.stopping_rule(stop),
                   x_true=x_true, seed=seed, device=device, callback=callback, callback_every=callback_every,
                   time_limit=time_limit, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume)
    result = once(seed, callback, time_limit) if n == 1 else \
        average_of_fits(once, n, seed=seed, callback=callback, time_limit=time_limit, x_true=x_true)
    fields_ = {f.name: getattr(result, f.name) for f in fields(FitResult)}
    return MRIResult(**fields_, zero_filled=(zero_filled / scale).clamp(0, 1)[None, None].float(),
                     mask=op.mask.clone(), scale=scale)
