"""The one fitting loop: theta* = argmin_theta E(F(f_theta(z)), y) + R(f_theta(z))."""
from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as nnf
from torch import nn

from ._validation import NeuralPriorError, check_betas, check_image
from .config import FitConfig
from .device import autocast_context, resolve_device
from .latent import crop_center, make_latent, pad_center, padded_size
from .memory import check_memory
from .metrics import _noise_levels, clipped_noise_rms, has_clipped_pixels, psnr, unclip
from .operators import Identity
from .stopping import StoppingRule, make_stopping_rule


class StopFitting(Exception):
    """Raised by a callback to end the loop after the current iteration (the result is marked interrupted)."""


@dataclass
class FitState:
    """What a callback sees after each step."""

    iteration: int                  # 0-based index of the step just taken
    loss: float                     # data term + regulariser of this step
    output: torch.Tensor            # raw network output f_theta(z + noise), cropped to the image size
    estimate: torch.Tensor          # the running estimate (output average when config.ema > 0), unclipped where
                                    # the fit unclips (then a new tensor each time); else the next step updates
                                    # it in place: clone it to keep it
    lr: float
    psnr: float | None = None       # of the estimate against x_true, when given
    best_iteration: int = -1        # iteration of the estimate the stopping rule keeps
    elapsed: float = 0.0            # seconds since the loop started
    num_iter: int = 0               # the iteration limit
    stage: str = ""                 # "stretch" during restore()'s fit on every known pixel after a held-out
                                    # stop (its iterations restart after the chosen one); "fit2", "fit2-stretch"
                                    # ... with restore(restarts=N); "" otherwise
    average: torch.Tensor | None = None   # what the stopping rule watches: the running average of the outputs;
                                    # the estimate is it unclipped (SURE on clipped noise, FitConfig.unclip),
                                    # else the same tensor


@dataclass
class FitResult:
    """The restored image and how it was obtained."""

    image: torch.Tensor             # (1, C, H, W) float32 in [0, 1], on the CPU
    stopped_at: int                 # iteration whose estimate is returned (-1: the average of several fits)
    iterations_run: int             # steps taken
    reason: str                     # why the loop ended
    seconds: float                  # wall time of the loop
    history: dict = field(default_factory=dict)   # per-iteration "loss", and "psnr"/"psnr_raw" with x_true
    config: dict = field(default_factory=dict)
    seed: int | None = None
    device: str = "cpu"
    precision: str = "float32"
    interrupted: bool = False       # True when stopped by Ctrl-C / SIGTERM
    # with fit(keep_best_state=True): the whole state after the returned iteration, without its
    # history (a ``resume`` continues from it once given ``history``, see :func:`fit`)
    best_state: dict | None = field(default=None, repr=False, compare=False)

    @property
    def oracle_best(self) -> tuple[float, int] | None:
        """(PSNR, iteration) of the best estimate against the ground truth, when it was given."""
        p = self.history.get("psnr")
        if not p:
            return None
        i = max(range(len(p)), key=p.__getitem__)
        return p[i], i


OPTIMIZERS = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam, "radam": torch.optim.RAdam}


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, mean absolute difference of neighbouring pixels."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def squared_gradient(x: torch.Tensor) -> torch.Tensor:
    """Tikhonov (quadratic) smoothness, mean squared difference of neighbouring pixels."""
    return (x[..., 1:, :] - x[..., :-1, :]).square().mean() + (x[..., :, 1:] - x[..., :, :-1]).square().mean()


DATA_TERMS = {
    "mse": nnf.mse_loss,
    "l1": nnf.l1_loss,
    # Poisson negative log-likelihood of counts y given the rate F(x) (up to constants)
    "poisson": lambda fx, y: (fx.clamp_min(1e-6) - y * torch.log(fx.clamp_min(1e-6))).mean(),
}


def fit(y: torch.Tensor, operator: Callable[[torch.Tensor], torch.Tensor] | None = None, *,
        net: nn.Module, config: FitConfig | None = None, stop: str | int | StoppingRule | None = "none",
        x_true: torch.Tensor | None = None, img_shape: tuple[int, int] | None = None,
        seed: int | None = 0, device: str | torch.device | None = "auto",
        callback: Callable[[FitState], None] | None = None, callback_every: int = 1,
        time_limit: float | None = None, latent: torch.Tensor | None = None,
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
        resume: str | os.PathLike | dict | None = None, keep_best_state: bool = False) -> FitResult:
    """Fit ``net`` so that ``operator(net(z))`` matches the observation ``y``.

    .. math:: \\theta^* = \\arg\\min_\\theta E(F(f_\\theta(z)), y) + \\lambda\\,TV(f_\\theta(z))
              + \\mu\\,\\|\\nabla f_\\theta(z)\\|^2

    E is ``config.loss`` (:data:`DATA_TERMS`), lambda ``config.tv_weight`` and mu ``config.tikhonov_weight``.
    On CUDA the forward and backward pass is recorded once as a CUDA graph and replayed at every
    step (``config.cuda_graph``); the result's ``config["cuda_graph"]`` says whether it was.

    Parameters
    ----------
    y : observation, (N, C, h, w) or (C, h, w), float in [0, 1].
    operator : the measurement model F, any differentiable callable (default: identity).
    net : generator; needs ``in_channels``, ``multiple`` and ``latent_size`` (see
        :mod:`neuralprior.networks`); any output size is handled by padding and cropping back.
    config : optimisation settings (:class:`FitConfig`).
    stop : ``"auto"`` (no-reference early stopping), ``"none"`` or a number of iterations.
    x_true : ground truth, only to log PSNR; it never influences the result.
    img_shape : (H, W) of the image to recover; by default ``operator.input_shape`` or y's size.
    seed : seeds z and the perturbations (the network's initial weights are the caller's).
    callback : called with a :class:`FitState` every ``callback_every`` steps.
    time_limit : stop after this many seconds, returning the best estimate so far.
    latent : a given input z (e.g. the flash image of flash/no-flash); default: drawn from ``config``.
    checkpoint : file where the whole state (weights, optimiser, z, random state, output average,
        history) is saved every ``checkpoint_every`` iterations and when the run is stopped.
    resume : a checkpoint to continue from; with the same inputs and settings the result is the
        same as that of an uninterrupted run (bit-identical on the CPU). Also a state held in
        memory: a result's ``best_state`` with ``history`` set to the result's history up to
        ``stopped_at`` (other observations and operators of the same size are allowed: a fit
        continued on another problem).
        A callback may raise :class:`StopFitting` to end the run cleanly (the CLI does on Ctrl-C).
    keep_best_state : keep a copy of the whole state at each estimate the stopping rule judges
        best, returned as ``result.best_state`` (and saved in checkpoints).

    Returns
    -------
    FitResult
    """
    cfg = config or FitConfig()
    y = check_image(y, "observation")
    dev = resolve_device(device)
    operator = operator if operator is not None else nn.Identity()
    rule = make_stopping_rule(stop)
    rule.reset()
    if img_shape is None:
        shape_fn = getattr(operator, "input_shape", None)
        img_shape = tuple(shape_fn(tuple(y.shape))[-2:]) if shape_fn else tuple(y.shape[-2:])
    h, w = img_shape
    if x_true is not None:
        x_true = check_image(x_true, "ground truth").to(dev)
        if tuple(x_true.shape[-2:]) != (h, w):
            raise NeuralPriorError(f"ground truth is {x_true.shape[-2]}x{x_true.shape[-1]}, the restored image will be {h}x{w}")

    # generators: one on the CPU for z (same z on every device), one on the device for the perturbations
    seed = int(torch.seed() % 2**31) if seed is None else int(seed)
    gen_cpu = torch.Generator().manual_seed(seed)
    gen_dev = torch.Generator(device=dev).manual_seed(seed + 1)

    check_memory(net, (h, w), dev, window=getattr(rule, "window", 0),   # refuse before allocating
                 passes=2 if cfg.loss == "sure" else 1)
    ph, pw = padded_size(h, w, getattr(net, "multiple", 1))
    if latent is None and cfg.input_kind == "observation":
        if tuple(y.shape[-2:]) != (h, w):
            raise NeuralPriorError("input_kind='observation' needs an observation of the image's size (denoising)")
        latent = y
    if latent is None:
        lh, lw = net.latent_size(ph, pw) if hasattr(net, "latent_size") else (ph, pw)
        z = make_latent(cfg.input_kind, net.in_channels, (lh, lw), scale=cfg.input_scale, generator=gen_cpu)
    else:
        z = check_image(latent, "latent").float()
        if tuple(z.shape[-2:]) == (h, w) and (ph, pw) != (h, w):
            z = pad_center(z, ph, pw)       # an image-sized input (flash/no-flash): padded like the output
        if z.shape[1] != net.in_channels:
            raise NeuralPriorError(f"the network takes {net.in_channels} input channels, the given input has {z.shape[1]}")
    net = net.to(dev).train()
    z, y = z.to(dev), y.to(dev).float()
    if getattr(rule, "residual_power", 0) > 0 and isinstance(operator, (Identity, nn.Identity)) \
            and tuple(y.shape[-2:]) == (h, w):
        rule.observation = y            # the rule watches the windowed std relative to the residual to y
    if isinstance(operator, nn.Module):
        operator = operator.to(dev)
    use_graph = cfg.cuda_graph and dev.type == "cuda"
    autocast, precision = autocast_context(dev, cfg.precision, cache=not use_graph)
    if cfg.channels_last not in (True, False, "auto"):
        raise NeuralPriorError(f"channels_last must be True, False or 'auto', got {cfg.channels_last!r}")
    # "auto": with bfloat16 or float16 only; in float32 on a CPU it was slower (docs/performance.md)
    channels_last = precision != "float32" if cfg.channels_last == "auto" else cfg.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    z = z.contiguous(memory_format=memory_format)
    sure = cfg.loss == "sure"
    if cfg.loss not in DATA_TERMS and not sure:
        raise NeuralPriorError(f"unknown loss {cfg.loss!r}; use {', '.join(DATA_TERMS)} or sure")
    data_term = DATA_TERMS["mse" if sure else cfg.loss]
    if cfg.sure_batched not in (True, False, "auto"):
        raise NeuralPriorError(f"sure_batched must be True, False or 'auto', got {cfg.sure_batched!r}")
    batched = dev.type == "cuda" if cfg.sure_batched == "auto" else cfg.sure_batched
    sigma = eps = 0.0
    unclip_sigma = None             # the Gaussian std before clipping, when the estimate is unclipped
    sigma_p = cfg.reg_noise_std
    if cfg.reg_noise_per_variance > 0 and not sure:
        raise NeuralPriorError("reg_noise_per_variance needs the SURE loss (it scales sigma_p with the noise variance)")
    if sure:
        if not isinstance(operator, (Identity, nn.Identity)):
            raise NeuralPriorError("the SURE loss is for denoising (no measurement operator)")
        if cfg.input_kind != "observation":
            raise NeuralPriorError("the SURE loss needs the observation as network input (input_kind='observation')")
        sigma, before = _noise_levels_for(y, cfg)
        if cfg.unclip and has_clipped_pixels(y):
            unclip_sigma = before
        eps = cfg.sure_epsilon * sigma
        if cfg.reg_noise_per_variance > 0:
            sigma_p = cfg.reg_noise_per_variance * sigma**2
        if hasattr(rule, "noise_level"):
            rule.noise_level = sigma            # lets the rule judge when the estimate has settled

    def image_of(average: torch.Tensor) -> torch.Tensor:
        """The image the output average stands for: itself, or unclipped (computed only where it is used)."""
        return average if unclip_sigma is None else unclip(average, unclip_sigma)

    params = [p for p in net.parameters() if p.requires_grad]
    if cfg.optimizer not in OPTIMIZERS:
        raise NeuralPriorError(f"unknown optimizer {cfg.optimizer!r}; use {', '.join(OPTIMIZERS)}")
    betas = check_betas(cfg.betas)
    fused = {"fused": True} if dev.type == "cuda" and cfg.optimizer == "adam" else {}
    optimizer = OPTIMIZERS[cfg.optimizer](params, lr=cfg.lr, betas=betas, **fused)
    last_good = [p.detach().clone() for p in params] if cfg.guard else []
    lr_scale, loss_avg = 1.0, None
    restored = False                # the weights are the last good ones, put back by the guard at the last step
    estimate = best = None
    best_it, reason, interrupted = -1, "", False
    history: dict[str, list] = {"loss": []}
    if x_true is not None:
        history["psnr"], history["psnr_raw"] = [], []
    start_it, elapsed_before = 0, 0.0
    best_state = None
    if resume is not None:
        if isinstance(resume, dict):        # a copy: the run must not change the caller's state
            state = _check_state(_map_tensors(resume, lambda t: t.detach().clone()), cfg, seed, tuple(y.shape), (h, w))
        else:
            state = _load_checkpoint(resume, cfg, seed, tuple(y.shape), (h, w))
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        z = state["z"].to(dev).contiguous(memory_format=memory_format)
        gen_dev.set_state(state["gen_dev"])
        if state["rule"] is not None:           # None: a best_state, continued under another rule
            rule.load_state_dict(state["rule"])
        best_state = state.get("best_state")
        estimate, best = _to(state["estimate"], dev), _to(state["best"], dev)
        best_it, history, lr_scale, loss_avg = state["best_it"], state["history"], state["lr_scale"], state["loss_avg"]
        if cfg.guard:
            torch._foreach_copy_(last_good, [t.to(dev) for t in state["last_good"]])
        start_it, elapsed_before = state["iteration"] + 1, state["elapsed"]
    start = time.perf_counter() - elapsed_before

    def passes(noise: torch.Tensor | None, b: torch.Tensor | None):
        """One forward and backward pass; returns the output (cropped), the loss, the data term and the loss
        without its regularisers (SURE's own value with the SURE loss)."""
        z_in = z if noise is None else z + sigma_p * noise
        with autocast:
            # SURE: the pair (z_in, z_in + eps b) for the divergence below, as one batch or two passes
            if sure and batched:
                out, out_b = crop_center(net(torch.cat([z_in, z_in + eps * b])), h, w).chunk(2)
            else:
                out = crop_center(net(z_in), h, w)
                out_b = crop_center(net(z_in + eps * b), h, w) if sure else None
            loss = fit_term = data_term(operator(out.float()), y)
            if sure:    # + 2 sigma^2 div f(y) / n, divergence by one Monte-Carlo finite difference
                div = (crop_center(b, h, w) * (out_b.float() - out.float())).sum() / eps
                loss = fit_term - sigma**2 + 2 * sigma**2 * div / y.numel()
            risk = loss
            if cfg.tv_weight > 0:
                loss = loss + cfg.tv_weight * total_variation(out.float())
            if cfg.tikhonov_weight > 0:
                loss = loss + cfg.tikhonov_weight * squared_gradient(out.float())
        loss.backward()
        return out, loss, fit_term, risk

    graph = graph_io = None     # the recorded CUDA graph of `passes` and its (inputs, outputs)

    def state(iteration: int, whole: bool = True) -> dict:
        """Everything needed to go on after ``iteration`` (tensors by reference); ``whole=False``:
        without the history and the rule's state, whose lists grow with the run."""
        return dict(
            iteration=iteration, net=net.state_dict(), optimizer=optimizer.state_dict(), z=z,
            gen_dev=gen_dev.get_state(), rule=rule.state_dict() if whole else None, estimate=estimate,
            best=best, best_it=best_it, history=history if whole else None, lr_scale=lr_scale, loss_avg=loss_avg,
            last_good=list(last_good), elapsed=time.perf_counter() - start, config=cfg.to_dict(),
            seed=seed, y_shape=tuple(y.shape), img_shape=(h, w))

    def save(iteration: int) -> None:
        _save_checkpoint(checkpoint, _map_tensors(dict(state(iteration), best_state=best_state), torch.Tensor.cpu))

    buffers: list[torch.Tensor] = []    # best_state's tensors, reused from one copy to the next

    def snapshot(iteration: int) -> dict:
        """A copy of the state after ``iteration`` without its history; z (never changed) by reference."""
        current = dict(state(iteration, whole=False), z=None)
        live = _tensors_in(current)
        if [(t.shape, t.dtype, t.device) for t in live] != [(b.shape, b.dtype, b.device) for b in buffers]:
            buffers[:] = [t.detach().clone() for t in live]
        else:                           # one fused copy per device
            for d in {b.device for b in buffers}:
                pairs = [(b, t.detach()) for b, t in zip(buffers, live) if b.device == d]
                torch._foreach_copy_([b for b, _ in pairs], [t for _, t in pairs])
        copies = iter(buffers)
        return dict(_map_tensors(current, lambda t: next(copies)), z=z)

    try:
        for it in range(start_it, cfg.num_iter):
            # learning rate: constant (paper) or cosine decay, times the guard's back-off
            decay = cfg.lr_decay_to + (1 - cfg.lr_decay_to) * 0.5 * (1 + math.cos(math.pi * it / max(cfg.num_iter, 1)))
            lr = cfg.lr * decay * lr_scale
            for g in optimizer.param_groups:
                g["lr"] = lr

            # forward and backward: perturb z (sigma_p), generate, crop to the image, measure, differentiate
            noise = torch.randn(z.shape, generator=gen_dev, device=dev, dtype=z.dtype) if sigma_p > 0 else None
            b = torch.randn(z.shape, generator=gen_dev, device=dev, dtype=z.dtype) if sure else None
            if use_graph and graph is None:
                graph, graph_io = _record_cuda_graph(passes, (noise, b), optimizer)
                use_graph = graph is not None
            if graph is not None:          # replay the recorded pass on this step's draws
                for static, drawn in zip(graph_io[0], (noise, b)):
                    if drawn is not None:
                        static.copy_(drawn)
                graph.replay()
                out, loss, fit_term, risk = graph_io[1]
            else:
                optimizer.zero_grad(set_to_none=True)
                out, loss, fit_term, risk = passes(noise, b)
            loss_value = float(loss.detach())   # host sync: needed for the guard and the history
            fit_value = float(fit_term.detach()) if sure else loss_value   # SURE's estimate is noisy, may be < 0

            # divergence guard: on NaN or a sudden jump, go back to the last good weights, halve lr (no step)
            jump = loss_avg is not None and it > 10 and fit_value > cfg.guard_jump * loss_avg
            if cfg.guard and jump and restored and math.isfinite(loss_value):
                # the last good weights themselves measure this high: the loss changed (a perturbation or an
                # operator that changed), not the weights. Take it as the new level, undo the halving, go on.
                jump, loss_avg, lr_scale, lr = False, None, lr_scale * 2, lr * 2
                for g in optimizer.param_groups:
                    g["lr"] = lr
            if cfg.guard and (not math.isfinite(loss_value) or jump):
                with torch.no_grad():
                    torch._foreach_copy_(params, last_good)
                optimizer.state.clear()
                lr_scale *= 0.5
                restored = math.isfinite(loss_value)
                history["loss"].append(loss_value)
                if x_true is not None:
                    history["psnr"].append(history["psnr"][-1] if history["psnr"] else float("nan"))
                    history["psnr_raw"].append(history["psnr_raw"][-1] if history["psnr_raw"] else float("nan"))
                continue
            restored = False
            if cfg.guard:
                with torch.no_grad():
                    torch._foreach_copy_(last_good, [p.detach() for p in params])
            loss_avg = fit_value if loss_avg is None else 0.9 * loss_avg + 0.1 * fit_value
            optimizer.step()

            # running estimate: exponential average of the outputs, or the output itself
            out = out.detach().float()
            if graph is not None:
                out = out.clone()           # the graph's output is overwritten by the next replay
            if cfg.ema > 0 and estimate is not None:
                weight = min(cfg.ema, (1 + it) / (10 + it)) if cfg.ema_warmup else cfg.ema
                estimate.mul_(weight).add_(out, alpha=1 - weight)
            else:
                estimate = out.clone()
            history["loss"].append(loss_value)
            p = shown = None            # shown: the estimate's image, made once per iteration where it is used
            if x_true is not None:
                shown = image_of(estimate)
                p = psnr(shown, x_true)
                history["psnr"].append(p)
                history["psnr_raw"].append(psnr(out, x_true))

            # stopping rule: keep the estimate it judges best; stop when it says so
            if sure:
                rule.observe_loss(float(risk.detach()))   # SURE's own value (no regulariser): an unbiased
                                                          # estimate of the output's error
            decision = rule.update(it, estimate)
            if decision.best or best is None:
                best, best_it = estimate.clone(), it
                if keep_best_state:
                    best_state = snapshot(it)
            elapsed = time.perf_counter() - start
            if checkpoint is not None and (it + 1) % checkpoint_every == 0:
                save(it)
            if callback is not None and (it % callback_every == 0 or decision.stop):
                try:
                    callback(FitState(it, loss_value, out, image_of(estimate) if shown is None else shown, lr, p,
                                      best_it, elapsed, cfg.num_iter, average=estimate))
                except StopFitting:
                    interrupted, reason = True, "interrupted"
                    if checkpoint is not None:
                        save(it)
                    break
            if decision.stop:
                reason = decision.reason
                break
            if time_limit is not None and elapsed > time_limit:
                reason = f"time limit of {time_limit:g} s reached"
                break
        else:
            reason = f"iteration limit {cfg.num_iter} reached"
    except KeyboardInterrupt:
        interrupted, reason = True, "interrupted"
    if best is None:
        raise NeuralPriorError("fitting ended before the first iteration completed")
    if checkpoint is not None and not interrupted and estimate is not None:
        save(len(history["loss"]) - 1)
    return FitResult(image=image_of(best).clamp(0, 1).cpu(), stopped_at=best_it, iterations_run=len(history["loss"]),
                     reason=reason, seconds=time.perf_counter() - start, history=history,
                     config=dict(cfg.to_dict(), cuda_graph=graph is not None, channels_last=channels_last,  # used
                                 # noise_sigma: the level SURE used (the noise's rms); noise_sigma_given: the
                                 # std before clipping it came from, when given; unclip_sigma: the std
                                 # before clipping the estimate was unclipped with (None: not unclipped)
                                 **({"noise_sigma": sigma, "noise_sigma_given": cfg.noise_sigma,
                                     "unclip_sigma": unclip_sigma,
                                     "reg_noise_std": sigma_p, "sure_batched": batched} if sure else {})),
                     seed=seed, device=str(dev), precision=precision, interrupted=interrupted,
                     best_state=best_state if keep_best_state else None)


def _record_cuda_graph(passes: Callable, draws: tuple, optimizer: torch.optim.Optimizer):
    """Record ``passes(*draws)`` (forward and backward) as a CUDA graph.

    Returns ``(graph, (static_draws, static_outputs))``: copy each step's draws into the static
    ones and replay; the gradients land in the parameters' ``.grad``, which stay allocated. Returns
    ``(None, None)`` with a warning when recording fails (an operator that synchronises with the
    host, say): the loop then runs plain passes.
    """
    static = tuple(None if d is None else d.clone() for d in draws)
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):       # warm-up on a side stream (cuDNN picks its kernels), as recording needs
            for _ in range(3):
                optimizer.zero_grad(set_to_none=True)
                passes(*static)
        torch.cuda.current_stream().wait_stream(side)
        optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = passes(*static)
    except Exception as e:                  # noqa: BLE001 - any failure means: run without the graph
        why = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(f"CUDA graph recording failed, fitting without it: {why}", RuntimeWarning, stacklevel=3)
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return None, None
    return graph, (static, outputs)


def noise_level(y: torch.Tensor, config: FitConfig) -> float:
    """The Gaussian noise std the SURE loss assumes: the root mean square of the noise in ``y``.

    Estimated from ``y`` (at least half a grey level, so that a clean image is fitted as it is, not
    refused); or from ``config.noise_sigma``, the std before clipping to [0, 1], which is weaker where
    ``y`` has pixels at black or white (:func:`~neuralprior.metrics.clipped_noise_rms`)."""
    return _noise_levels_for(y, config)[0]


def _noise_levels_for(y: torch.Tensor, config: FitConfig) -> tuple[float, float]:
    """(:func:`noise_level`, the std of the Gaussian noise before clipping: given, or estimated)."""
    if config.noise_sigma is None:
        rms, before = _noise_levels(y)
        return max(rms, 0.5 / 255), max(before, 0.5 / 255)
    if not config.noise_sigma > 0:
        raise NeuralPriorError("the SURE loss needs a positive noise level (noise_sigma)")
    return clipped_noise_rms(y, float(config.noise_sigma)), float(config.noise_sigma)


def _to(t: torch.Tensor | None, device) -> torch.Tensor | None:
    return None if t is None else t.to(device)


def _tensors_in(obj) -> list[torch.Tensor]:
    """The tensors in ``obj`` in :func:`_map_tensors`' order."""
    found: list[torch.Tensor] = []
    _map_tensors(obj, lambda t: found.append(t) or t)
    return found


def _map_tensors(obj, fn):
    """``obj`` (nested dicts, lists and tuples) with ``fn`` applied to every tensor in it."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def _save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` atomically: a crash leaves the previous checkpoint intact."""
    from .io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path, cfg: FitConfig, seed: int, y_shape: tuple, img_shape: tuple) -> dict:
    """Read a checkpoint written by :func:`fit` and check it belongs to this problem."""
    path = Path(path)
    if not path.is_file():
        raise NeuralPriorError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)   # our own file: it holds Python objects
    except Exception:
        raise NeuralPriorError(f"{path}: not a neuralprior checkpoint (unreadable)") from None
    return _check_state(state, cfg, seed, y_shape, img_shape, where=f"{path}: ")


def _check_state(state, cfg: FitConfig, seed: int, y_shape: tuple, img_shape: tuple, where: str = "") -> dict:
    """``state`` (a checkpoint's or a result's ``best_state``), checked to belong to this problem."""
    if not isinstance(state, dict) or "net" not in state or "iteration" not in state:
        raise NeuralPriorError(f"{where}not a neuralprior checkpoint")
    if state.get("history") is None:
        raise NeuralPriorError(f"{where}a best_state to resume needs the history up to its iteration")
    if tuple(state["y_shape"]) != tuple(y_shape) or tuple(state["img_shape"]) != tuple(img_shape):
        raise NeuralPriorError(f"{where}checkpoint is for an image of another size")
    free = ("num_iter", "unclip")   # neither changes the fit: the limit, and what the average is shown as
    mine = {k: v for k, v in cfg.to_dict().items() if k not in free}
    theirs = {k: v for k, v in {**FitConfig().to_dict(), **state["config"]}.items()   # fields added since: defaults
              if k not in free}
    if mine != theirs or state["seed"] != seed:
        diff = sorted(k for k in mine if mine[k] != theirs.get(k)) or ["seed"]
        raise NeuralPriorError(f"{where}checkpoint was made with other settings ({', '.join(diff)})")
    return state
