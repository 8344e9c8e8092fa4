"""When to stop fitting, without ground truth.

A deep image prior first reconstructs the image and later fits the noise. A stopping
rule watches the estimates as they come and says (a) whether the current estimate is
the best so far and (b) whether to stop. Rules never read the ground truth.

:class:`WindowedVariance` is ES-WMV (Wang, Li, Zhuang, Chen, Liang, Sun, 2021): the
running variance of the last ``window`` estimates falls while the network learns
the image and rises once it starts to fit noise; the iterate at the minimum
variance is returned, and fitting stops when no new minimum has been seen for
``patience`` iterations.

:class:`HeldOutError` needs measurements the fit never sees: a few of the known pixels of an
inpainting problem are held out of the data term (:func:`split_mask`); their error falls while
the network fills the image in and rises once it fits the known pixels at the expense of the
rest. The iterate at the minimum error is returned.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

from ._validation import NeuralPriorError


@dataclass
class Decision:
    best: bool = False      # the current estimate is the best so far: keep it
    stop: bool = False      # end the loop now
    reason: str = ""        # why it stopped (for the report)


class StoppingRule:
    """Base rule: every estimate is the best so far and the loop runs to its iteration limit."""

    name = "none"

    def reset(self) -> None:
        pass

    def update(self, iteration: int, estimate: torch.Tensor) -> Decision:
        return Decision(best=True)

    def observe_loss(self, value: float) -> None:
        """The fit's loss at the iteration about to be judged, where it is an unbiased estimate of the
        output's mean squared error (the SURE loss; :func:`~neuralprior.fit` calls this only then, with
        SURE's own value, without any regulariser the config adds). Most rules ignore it."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class FixedIterations(StoppingRule):
    """Stop after exactly ``n`` iterations, returning the last estimate."""

    name = "fixed"

    def __init__(self, n: int):
        self.n = int(n)

    def update(self, iteration: int, estimate: torch.Tensor) -> Decision:
        done = iteration + 1 >= self.n
        return Decision(best=True, stop=done, reason=f"fixed iteration count {self.n}" if done else "")


def _at_lowest(rule, iteration: int, value: float, lowest: float, what: str) -> tuple[Decision, bool]:
    """(decision, whether ``value`` is a new minimum) for a rule that keeps the estimate at the minimum
    of a watched quantity ``what``.

    Before ``rule.min_iterations`` every estimate is the best so far (and no minimum is kept). A
    ``value`` below ``lowest`` is a new minimum: ``rule.best_iteration`` becomes ``iteration`` (the
    caller keeps the value). No new minimum for ``rule.patience`` iterations: stop.
    """
    if iteration < rule.min_iterations:
        return Decision(best=True), False
    if value < lowest:
        rule.best_iteration = iteration
        return Decision(best=True), True
    if iteration - rule.best_iteration >= rule.patience:
        return Decision(stop=True, reason=f"{what} has not decreased for {rule.patience} iterations "
                                          f"(minimum at iteration {rule.best_iteration})"), False
    return Decision(), False


REFERENCE_NOISE = 25 / 255
"""σ_ref of :class:`WindowedVariance`'s ``tolerance_power``: the noise level at which the settled
threshold is ``tolerance`` x σ whatever the power (σ = 25 in 8-bit grey levels)."""


class WindowedVariance(StoppingRule):
    """ES-WMV: stop when the windowed variance of the estimates has not decreased for ``patience`` steps.

    Parameters
    ----------
    window : number of recent estimates whose variance is tracked.
    patience : iterations without a new variance minimum before stopping.
    min_iterations : never stop (or pick a best iterate) before this iteration.
    max_pixels : at most this many pixels per channel of each estimate are stored, which bounds the
        memory of the window; how they are chosen is ``sample``'s.
    sample : ``"pool"``: the estimates are average-pooled by ``f`` x ``f`` (``f`` a power of 2) and the
        variance is multiplied by ``f**2``; for changes uncorrelated between neighbouring pixels (a fit
        reproducing noise) that is their variance at full resolution, for smooth changes it is up to
        ``f**2`` times more. ``"pixels"``: a fixed random sample of pixel positions (drawn with a fixed
        seed, the same for every channel) is kept as it is; their mean variance estimates the one at full
        resolution whatever the changes look like, so a threshold in grey levels means the same at any
        image size.
    tolerance : also stop once the estimate has settled: when the root of the windowed variance
        falls below ``tolerance`` x :attr:`noise_level` (the noise std, which :func:`~neuralprior.fit`
        sets when it knows it, e.g. for the SURE loss). 0 = off.
    tolerance_power : how the settled threshold scales with the noise level: it is ``tolerance`` x σ x
        (σ / σ_ref) ** (tolerance_power - 1), σ_ref = 25/255 (:data:`REFERENCE_NOISE`), so
        ``tolerance`` x σ at σ_ref whatever the power. 1: proportional to σ throughout. Above 1, the
        stronger the noise, the sooner the estimate counts as settled, and the weaker, the later: a
        fit on strong noise reaches its best sooner and then slowly fits the noise, one on weak
        noise goes on gaining for longer, while the windowed variance, relative to σ, falls about
        alike at every noise level.
    settled : where no noise level is known (or ``tolerance`` is 0): the windowed std per pixel, on the
        0-1 scale, below which the estimate counts as settled and the loop ends at a new minimum
        (super-resolution: the fit has no noise to reproduce and its quality rises ever more slowly).
        0 = off.
    residual_power : with an :attr:`observation` (which :func:`~neuralprior.fit` sets where the
        observation is an image of the estimate's size, e.g. JPEG artefacts): the rule watches the
        windowed std divided by ρ ** ``residual_power`` instead of the std itself, ρ the RMS of the
        estimate minus the observation. The std falls as the estimate settles and ρ as the fit
        reproduces the observation; while the fit learns the image the std falls faster, once it
        reproduces the artefacts ρ does, and the ratio turns. The estimate at its minimum is returned,
        and the run ends ``patience`` iterations after it. A ratio, not a threshold: it needs no
        level, which changes with the artefacts' strength. 0 = off (the std itself).
    rise : the patience alone does not end the run: the watched std (or std / ρ ** ``residual_power``)
        must also have risen to (1 + ``rise``) x its minimum (a turn, not a plateau on which the fit
        may still be gaining). 0 = the patience alone.
    settle_lag, settle_ratio : the settled stop (``tolerance`` or ``settled``) also needs the windowed std to
        have stopped falling fast: at least ``settle_ratio`` x what it was ``settle_lag`` iterations before. A
        fit that still changes quickly is still learning the image even when its changes are already
        small (a smooth image under strong noise). 0 = off; no preset uses it (it delays fits that have
        turned early: docs/stopping.md, "a check that the std has stopped falling fast").
    loss_floor : where the fit's loss is an unbiased estimate of the output's error (SURE; the fit
        reports it through :meth:`observe_loss`): end the run when its mean over the last ``window``
        iterations falls below 0 before ``min_iterations``, returning the latest estimate. A mean
        squared error cannot be negative; SURE's turns negative once the fit reproduces noise faster
        than its divergence term sees, or where the noise level is a little high. Off; no preset uses
        it: on strongly clipped noise it caught two early peaks but ended others long before theirs
        (docs/stopping.md, "SURE below zero before iteration 100").
    min_decrease : a new minimum counts (it becomes the returned estimate and restarts the patience) only
        where the watched std (or std / ρ ** ``residual_power``) is at least this fraction below the last
        one that counted; the settled stop still looks at every new low. On a fit whose std keeps edging down
        while its quality falls, tiny new minima otherwise keep the patience from ending the run and return
        ever later estimates. 0 = every new minimum counts.
    """

    name = "auto"

    def __init__(self, window: int = 50, patience: int = 300, min_iterations: int = 100,
                 max_pixels: int = 128 * 128, tolerance: float = 0.0, tolerance_power: float = 1.0,
                 sample: str = "pool", settled: float = 0.0, residual_power: float = 0.0, rise: float = 0.0,
                 settle_lag: int = 0, settle_ratio: float = 0.0, loss_floor: bool = False,
                 min_decrease: float = 0.0):
        if sample not in ("pool", "pixels"):
            raise ValueError(f"sample must be 'pool' or 'pixels', got {sample!r}")
        if not (residual_power >= 0 and rise >= 0):
            raise ValueError(f"residual_power and rise must be 0 or more, got {residual_power} and {rise}")
        if not (settle_lag >= 0 and 0 <= settle_ratio < 1):
            raise ValueError(f"settle_lag must be 0 or more and settle_ratio in [0, 1), got {settle_lag} and "
                             f"{settle_ratio}")
        self.window, self.patience, self.min_iterations = int(window), int(patience), int(min_iterations)
        self.max_pixels = int(max_pixels)
        self.tolerance = float(tolerance)
        self.tolerance_power = float(tolerance_power)
        self.sample, self.settled = sample, float(settled)
        self.residual_power, self.rise = float(residual_power), float(rise)
        self.settle_lag, self.settle_ratio = int(settle_lag), float(settle_ratio)
        self.loss_floor = bool(loss_floor)
        if not 0 <= min_decrease < 1:
            raise ValueError(f"min_decrease must be in [0, 1), got {min_decrease}")
        self.min_decrease = float(min_decrease)
        self.noise_level: float | None = None
        self.observation: torch.Tensor | None = None    # for residual_power; not part of state_dict
        self.reset()

    def reset(self) -> None:
        self._buf: torch.Tensor | None = None
        self._count = 0
        self.best_variance = float("inf")      # the watched value at the last minimum that counted
        self.lowest_value = float("inf")       # the lowest watched value (the settled stop looks at each new one)
        self.best_iteration = -1
        self.pool = 1
        self._pixels: torch.Tensor | None = None
        self.variances: list[tuple[int, float]] = []
        self.residual: float | None = None      # the latest RMS residual to the observation (residual_power)
        self.losses: list[float] = []           # the last `window` losses (loss_floor)

    def _shrink(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x.detach().float()
        if self.sample == "pixels":
            if h * w <= self.max_pixels:
                return x.clone()
            if self._pixels is None or self._pixels.device != x.device:
                g = torch.Generator().manual_seed(0)
                self._pixels = torch.randperm(h * w, generator=g)[:self.max_pixels].sort().values.to(x.device)
            return x.flatten(-2)[..., self._pixels]
        f = 1
        while (h // f) * (w // f) > self.max_pixels:
            f *= 2
        self.pool = f
        return nnf.avg_pool2d(x, f) if f > 1 else x.clone()

    def observe_loss(self, value: float) -> None:
        if self.loss_floor:
            self.losses = (self.losses + [float(value)])[-self.window:]

    def update(self, iteration: int, estimate: torch.Tensor) -> Decision:
        if self.residual_power > 0 and self.observation is not None:
            if self.observation.device != estimate.device:
                self.observation = self.observation.to(estimate.device)
            self.residual = residual_rms(estimate, self.observation)
        x = self._shrink(estimate)
        if getattr(self, "_legacy", False):
            self.best_variance *= self.pool ** 2
            self.lowest_value = self.best_variance
            self.variances = [(i, v * self.pool ** 2) for i, v in self.variances]
            self._legacy = False
        if self._buf is None:
            self._buf = torch.zeros((self.window, *x.shape), dtype=torch.float32, device=x.device)
        elif self._buf.device != x.device:                  # resumed from a checkpoint on another device
            self._buf = self._buf.to(x.device)
        self._buf[self._count % self.window] = x      # ring buffer of the last `window` estimates
        self._count += 1
        if self._count < self.window:          # too early to judge: the latest estimate is the best one
            return Decision(best=True)
        return self.judge(iteration, float(self._buf.var(dim=0, unbiased=False).mean()) * self.pool ** 2)

    def _relative(self) -> bool:
        """Whether the settled threshold is relative to the noise level (``tolerance``) or absolute (``settled``)."""
        return bool(self.tolerance > 0 and self.noise_level)

    def settled_std(self) -> float:
        """The windowed std per pixel below which the estimate counts as settled (0: no such stop)."""
        if not self._relative():
            return self.settled
        sigma = self.noise_level
        return self.tolerance * sigma * (sigma / REFERENCE_NOISE) ** (self.tolerance_power - 1)

    def watched(self, var: float) -> float:
        """What the rule minimises for a windowed variance ``var``: ``var`` itself, or with ``residual_power``
        and a residual (:attr:`residual`), the square of the std divided by ρ ** ``residual_power``."""
        if self.residual_power > 0 and self.residual is not None:
            return var / self.residual ** (2 * self.residual_power) if self.residual > 0 else float("inf")
        return var

    def judge(self, iteration: int, var: float) -> Decision:
        """The decision for a windowed variance ``var`` (per pixel) at ``iteration`` (and the latest
        :attr:`residual`); :meth:`update` computes it from the estimates, a saved series can be replayed
        through this directly."""
        self.variances.append((iteration, var))
        if (self.loss_floor and iteration < self.min_iterations and len(self.losses) == self.window
                and sum(self.losses) < 0):
            return Decision(best=True, stop=True, reason=f"the SURE estimate of the error is below 0 (mean of the "
                                                         f"last {self.window} iterations) before iteration "
                                                         f"{self.min_iterations}")
        value = self.watched(var)
        what = (f"windowed std / residual^{self.residual_power:g}" if self.residual_power > 0 and
                self.residual is not None else "windowed variance")
        below = self.best_variance * (1 - self.min_decrease) ** 2       # a minimum that counts: under this
        decision, counted = _at_lowest(self, iteration, value, below, what)
        if decision.stop and self.rise > 0:
            grown = (value / self.best_variance) ** 0.5 - 1         # on the scale of the std
            if grown < self.rise:                                   # not yet risen: a plateau, go on
                return Decision()
            decision.reason += f", and it has risen {grown:.0%} above that minimum"
        if counted:
            self.best_variance = value
        if decision.stop or iteration < self.min_iterations or not value < self.lowest_value:
            return decision
        self.lowest_value = value                                   # a new low (every counted minimum is one)
        limit = self.settled_std()
        if limit > 0 and var ** 0.5 <= limit and self._falling_slowly(iteration, var):
            self.best_iteration = iteration
            scale = (f"{limit / self.noise_level:.3g} x the noise level" if self._relative()
                     else f"{limit * 255:.3g} grey levels")
            return Decision(best=True, stop=True, reason=f"estimate settled: windowed std below {limit:.3g} "
                                                         f"({scale})")
        return decision

    def _falling_slowly(self, iteration: int, var: float) -> bool:
        """Whether the windowed std at ``iteration`` is at least ``settle_ratio`` x its value ``settle_lag``
        iterations before (True when that check is off; False while there is no value that far back)."""
        if self.settle_lag <= 0:
            return True
        for it, before in reversed(self.variances):
            if it <= iteration - self.settle_lag:
                return var >= self.settle_ratio ** 2 * before
        return False

    def state_dict(self) -> dict:
        return {k: (v.clone() if isinstance(v, torch.Tensor) else list(v) if isinstance(v, list) else v)
                for k, v in vars(self).items() if k != "observation"}

    def load_state_dict(self, state: dict) -> None:
        if state.get("rule", self.name) != self.name:
            raise NeuralPriorError("the checkpoint was made with another stopping rule: resume it with the same --stop")
        vars(self).update(state)
        if "residual_power" not in state:       # saved before the residual ratio existed: it watched the std itself
            self.residual_power, self.rise = 0.0, 0.0
        if "settle_lag" not in state:           # saved before the settled stop looked at how fast the std falls
            self.settle_lag, self.settle_ratio = 0, 0.0
        if "loss_floor" not in state:           # saved before the SURE floor existed
            self.loss_floor, self.losses = False, []
        if "sample" not in state:               # saved before the pixel sample existed: the variances are pooled
            self.sample = "pool"
        if "min_decrease" not in state:         # saved before it existed: every minimum counted
            self.min_decrease, self.lowest_value = 0.0, self.best_variance
        self._legacy = "pool" not in state      # saved before the variance was scaled by pool**2: scale it once known


def residual_rms(estimate: torch.Tensor, observation: torch.Tensor) -> float:
    """RMS of ``estimate`` minus ``observation`` (same scale as the images), the residual
    :class:`WindowedVariance` divides by with ``residual_power``."""
    return float((estimate.detach().float() - observation).square().mean().sqrt())


class HeldOutError(StoppingRule):
    """Stop at the minimum error on held-out measurements (self-validation).

    ``target`` is the observation and ``weight`` is 1 on the pixels held out of the fit (0
    elsewhere), both broadcasting over the estimate. The mean squared error of the estimate on
    those pixels is computed at every iteration; the estimate at its minimum is the best one, and
    the loop ends when no new minimum has been seen for ``patience`` iterations (never before
    ``min_iterations``). Where the missing pixels are drawn at random, as the held-out ones are,
    this error estimates the error on the missing pixels without the ground truth.
    """

    name = "held-out"

    def __init__(self, target: torch.Tensor, weight: torch.Tensor, patience: int = 500, min_iterations: int = 100):
        if not float(weight.sum()) > 0:
            raise ValueError("held-out stopping needs at least one held-out pixel")
        self.target, self.weight = target.detach().float(), weight.detach().float()
        self.patience, self.min_iterations = int(patience), int(min_iterations)
        self.count = held_out_pixels(weight)
        self.reset()

    def reset(self) -> None:
        self.best_error = float("inf")
        self.best_iteration = -1
        self.errors: list[tuple[int, float]] = []

    def error(self, estimate: torch.Tensor) -> float:
        """Mean squared error of ``estimate`` on the held-out pixels."""
        if self.target.device != estimate.device:
            self.target, self.weight = self.target.to(estimate.device), self.weight.to(estimate.device)
        w = self.weight.expand_as(estimate)
        return float(((estimate.detach().float() - self.target).square() * w).sum() / w.sum())

    def update(self, iteration: int, estimate: torch.Tensor) -> Decision:
        return self.judge(iteration, self.error(estimate))

    def judge(self, iteration: int, error: float) -> Decision:
        """The decision for a held-out error ``error`` at ``iteration`` (a saved series can be replayed)."""
        self.errors.append((iteration, error))
        decision, lowest = _at_lowest(self, iteration, error, self.best_error,
                                      f"error on the {self.count} held-out pixels")
        if lowest:
            self.best_error = error
        return decision

    def state_dict(self) -> dict:
        return {"rule": self.name, "best_error": self.best_error, "best_iteration": self.best_iteration,
                "errors": list(self.errors)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("rule") != self.name:
            raise NeuralPriorError("the checkpoint was made with another stopping rule (before the held-out stop, "
                                   "or with --stop none or N): resume it with the same --stop")
        self.best_error, self.best_iteration = state["best_error"], state["best_iteration"]
        self.errors = list(state["errors"])


def held_out_pixels(weight: torch.Tensor) -> int:
    """Pixel positions a held-out ``weight`` covers (a per-channel mask counts each position once)."""
    w = weight.detach()
    return int((w.amax(dim=-3) if w.ndim >= 3 else w).gt(0).sum())


def split_mask(mask: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the known pixels of an inpainting ``mask`` (1 = known) into (fitted, held out).

    A random ``fraction`` of the known pixel positions (the same in every channel of a per-channel
    mask) is held out; the two masks are disjoint and add up to ``mask > 0.5``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be between 0 and 1, got {fraction}")
    known = (mask > 0.5).float()
    # a stream of its own: a mask drawn with torch.rand from the same seed must not decide the draw
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + 0x5EED) % 2**63)
    draw = torch.rand((*known.shape[:-3], 1, *known.shape[-2:]), generator=gen) if known.ndim >= 3 else \
        torch.rand(known.shape, generator=gen)
    draw = draw.to(known.device)
    held = (draw < fraction).float() * known
    return known - held, held


def hold_out_noisy(y: torch.Tensor, fraction: float, sigma: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold a random ``fraction`` of the pixel positions of a noisy image ``y`` out of a denoising fit.

    Returns ``(observation to fit, held)``: ``held`` is 1 at the held-out positions (shape (1, 1, H, W), the same
    in every channel, drawn as :func:`split_mask` draws); in the observation each of them is replaced by the
    mean of its neighbours that are not held out (3x3) plus fresh Gaussian noise, of std ``sigma`` (the noise's,
    before clipping) x sqrt(1 - 1/k) for k neighbours averaged, so the pixel looks as noisy as the others,
    clipped to [0, 1] and, where ``y`` is on the 8-bit grid, rounded to it. Nothing the fit sees then carries
    the noise of the held-out pixels: the error of an estimate there against ``y`` is its error against the
    clean image plus the noise's variance, whatever the fit reproduces elsewhere (Noise2Self's argument,
    Batson and Royer 2019). :class:`HeldOutError` watches it.
    """
    _, held = split_mask(torch.ones(1, 1, *y.shape[-2:]), fraction, seed)
    held = held.to(y.device)
    keep = 1 - held
    kept = y * keep                 # nothing below reads the held-out pixels' values
    c = y.shape[-3]
    ring = torch.ones(1, 1, 3, 3, device=y.device)
    ring[..., 1, 1] = 0
    total = nnf.conv2d(nnf.pad(kept, (1, 1, 1, 1), mode="replicate"), ring.expand(c, 1, 3, 3), groups=c)
    k = nnf.conv2d(nnf.pad(keep, (1, 1, 1, 1), mode="replicate"), ring)
    mean = torch.where(k > 0, total / k.clamp(min=1), kept.sum() / (keep.sum() * c))
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + 0xF111) % 2**63)
    fresh = torch.randn(y.shape, generator=gen).to(y.device)
    fill = (mean + sigma * (1 - 1 / k.clamp(min=1)).sqrt() * fresh).clamp(0, 1)
    if torch.equal(torch.round(kept * 255) / 255, kept):
        fill = torch.round(fill * 255) / 255
    return kept + fill * held, held


def make_stopping_rule(spec: str | int | StoppingRule | None, **auto_kwargs) -> StoppingRule:
    """``"auto"`` (ES-WMV), ``"none"`` (run to the iteration limit), or an int N (exactly N iterations).
    (``"held-out"``, denoising's stop on held-out noisy pixels, is built by :func:`~neuralprior.restore`.)"""
    if isinstance(spec, StoppingRule):
        return spec
    if spec is None or spec == "none":
        return StoppingRule()
    if spec == "auto":
        return WindowedVariance(**auto_kwargs)
    if spec == "held-out":      # it changes what is fitted: restore() builds it (denoising only)
        raise NeuralPriorError("stop 'held-out' is for denoising (it holds noisy pixels out of the fit); "
                               "use auto, none or a number of iterations here")
    try:
        n = int(spec)
    except (TypeError, ValueError):
        raise ValueError(f"unknown stopping rule {spec!r}; use auto, none or a number of iterations") from None
    if n < 1 or str(n) != str(spec).strip():
        raise ValueError(f"stop must be auto, none or a positive number of iterations, got {spec!r}")
    return FixedIterations(n)
