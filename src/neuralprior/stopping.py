"""When to stop fitting, without ground truth.

A deep image prior first reconstructs the image and later fits the noise. A stopping
rule watches the estimates as they come and says (a) whether the current estimate is
the best so far and (b) whether to stop. Rules never read the ground truth.

:class:`WindowedVariance` is ES-WMV (Wang, Li, Zhuang, Chen, Liang, Sun, 2021): the
running variance of the last ``window`` estimates falls while the network learns
the image and rises once it starts to fit noise; the iterate at the minimum
variance is returned, and fitting stops when no new minimum has been seen for
``patience`` iterations.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as nnf


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
    max_pixels : estimates are average-pooled by ``f`` x ``f`` (``f`` a power of 2) to at most this
        many pixels per channel before they are stored, which bounds the memory of the window. The
        variance is multiplied by ``f**2``: for changes uncorrelated between neighbouring pixels that
        is their variance at full resolution, so ``tolerance`` means the same at any image size.
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
    """

    name = "auto"

    def __init__(self, window: int = 50, patience: int = 300, min_iterations: int = 100,
                 max_pixels: int = 128 * 128, tolerance: float = 0.0, tolerance_power: float = 1.0):
        self.window, self.patience, self.min_iterations = int(window), int(patience), int(min_iterations)
        self.max_pixels = int(max_pixels)
        self.tolerance = float(tolerance)
        self.tolerance_power = float(tolerance_power)
        self.noise_level: float | None = None
        self.reset()

    def reset(self) -> None:
        self._buf: torch.Tensor | None = None
        self._count = 0
        self.best_variance = float("inf")
        self.best_iteration = -1
        self.pool = 1
        self.variances: list[tuple[int, float]] = []

    def _shrink(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        f = 1
        while (h // f) * (w // f) > self.max_pixels:
            f *= 2
        self.pool = f
        x = x.detach().float()
        return nnf.avg_pool2d(x, f) if f > 1 else x.clone()

    def update(self, iteration: int, estimate: torch.Tensor) -> Decision:
        x = self._shrink(estimate)
        if getattr(self, "_legacy", False):
            self.best_variance *= self.pool ** 2
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

    def settled_std(self) -> float:
        """The windowed std per pixel below which the estimate counts as settled (0: no such stop)."""
        if not (self.tolerance > 0 and self.noise_level):
            return 0.0
        sigma = self.noise_level
        return self.tolerance * sigma * (sigma / REFERENCE_NOISE) ** (self.tolerance_power - 1)

    def judge(self, iteration: int, var: float) -> Decision:
        """The decision for a windowed variance ``var`` (per pixel) at ``iteration``; :meth:`update` computes
        it from the estimates, a saved series can be replayed through this directly."""
        self.variances.append((iteration, var))
        if iteration < self.min_iterations:
            return Decision(best=True)
        if var < self.best_variance:
            self.best_variance, self.best_iteration = var, iteration
            limit = self.settled_std()
            if limit > 0 and var ** 0.5 <= limit:
                return Decision(best=True, stop=True, reason=f"estimate settled: windowed std below {limit:.3g} "
                                                             f"({limit / self.noise_level:.3g} x the noise level)")
            return Decision(best=True)
        if iteration - self.best_iteration >= self.patience:
            return Decision(stop=True, reason=f"windowed variance has not decreased for {self.patience} iterations "
                                               f"(minimum at iteration {self.best_iteration})")
        return Decision()

    def state_dict(self) -> dict:
        return {k: (v.clone() if isinstance(v, torch.Tensor) else list(v) if isinstance(v, list) else v)
                for k, v in vars(self).items()}

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)
        self._legacy = "pool" not in state      # saved before the variance was scaled by pool**2: scale it once known


def make_stopping_rule(spec: str | int | StoppingRule | None, **auto_kwargs) -> StoppingRule:
    """``"auto"`` (ES-WMV), ``"none"`` (run to the iteration limit), or an int N (exactly N iterations)."""
    if isinstance(spec, StoppingRule):
        return spec
    if spec is None or spec == "none":
        return StoppingRule()
    if spec == "auto":
        return WindowedVariance(**auto_kwargs)
    try:
        n = int(spec)
    except (TypeError, ValueError):
        raise ValueError(f"unknown stopping rule {spec!r}; use auto, none or a number of iterations") from None
    if n < 1 or str(n) != str(spec).strip():
        raise ValueError(f"stop must be auto, none or a positive number of iterations, got {spec!r}")
    return FixedIterations(n)
