"""The fitting loop: reproducibility, restoration quality, history, guard, interrupts and stopping rules."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from PIL import Image

import neuralprior
from neuralprior import FitConfig, FitState, NeuralPriorError, fit, psnr
from neuralprior.io import load_image, to_array
from neuralprior.networks import SkipNet
from neuralprior.stopping import (Decision, FixedIterations, HeldOutError, StoppingRule, WindowedVariance,
                                  make_stopping_rule, split_mask)


def tiny_net(out_channels: int = 3, in_channels: int = 8, seed: int = 0) -> SkipNet:
    """A 3-level SkipNet with 16 channels: the loop, not the architecture, is under test."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SkipNet(in_channels=in_channels, out_channels=out_channels, channels_down=[16, 16, 16],
                       channels_up=[16, 16, 16], channels_skip=4)


def quick(y, operator=None, *, num_iter=10, net=None, **kwargs):
    cfg = kwargs.pop("config", None) or FitConfig(num_iter=num_iter)
    return fit(y, operator, net=net or tiny_net(out_channels=y.shape[-3]), config=cfg, device="cpu", **kwargs)


def add_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


# --- (a) reproducibility ---------------------------------------------------------------------

def test_same_seed_gives_bit_identical_images(astronaut_crop):
    a = neuralprior.denoise(astronaut_crop, device="cpu", num_iter=8, stop="none", seed=3)
    b = neuralprior.denoise(astronaut_crop, device="cpu", num_iter=8, stop="none", seed=3)
    c = neuralprior.denoise(astronaut_crop, device="cpu", num_iter=8, stop="none", seed=4)
    assert torch.equal(a.image, b.image)
    assert a.history["loss"] == b.history["loss"]
    assert not torch.equal(a.image, c.image)
    assert a.seed == 3 and c.seed == 4


def test_seed_drives_the_latent_and_perturbations_with_fixed_weights(astronaut_crop):
    a = quick(astronaut_crop, seed=0)
    b = quick(astronaut_crop, seed=0)
    c = quick(astronaut_crop, seed=1)
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image)


def test_seed_none_draws_a_seed_and_reports_it(astronaut_crop):
    r = quick(astronaut_crop, num_iter=2, seed=None)
    assert isinstance(r.seed, int)
    again = quick(astronaut_crop, num_iter=2, seed=r.seed)          # the reported seed reproduces the run
    assert torch.equal(r.image, again.image)


# --- (b) denoising ---------------------------------------------------------------------------

def test_denoising_gains_psnr(astronaut_crop):
    noisy = add_noise(astronaut_crop, 25 / 255, seed=1)
    before = psnr(noisy, astronaut_crop)                            # about 20.4 dB
    r = neuralprior.denoise(noisy, device="cpu", num_iter=300, stop="none", seed=0)
    gain = psnr(r.image, astronaut_crop) - before
    # measured: +7.4 dB (bfloat16 autocast on an AVX512-BF16 CPU; float32 gives about the same)
    assert gain > 5.0, f"denoising gained only {gain:.2f} dB"
    assert r.iterations_run == 300 and r.image.shape == noisy.shape


def test_jpeg_artefact_removal_gains_psnr(astronaut_crop, tmp_path):
    Image.fromarray(to_array(astronaut_crop)).save(tmp_path / "q10.jpg", quality=10)   # strong blocking, ringing
    jpeg, _ = load_image(tmp_path / "q10.jpg")
    before = psnr(jpeg, astronaut_crop)                            # about 26.4 dB
    r = neuralprior.restore("jpeg", jpeg, device="cpu", num_iter=500, seed=0)     # the default preset and its stop
    gain = psnr(r.image, astronaut_crop) - before
    # measured: +0.47 dB with bfloat16 autocast (AVX512-BF16 CPU), Adam betas (0.8, 0.9), the rule not yet turned at 500
    assert gain > 0.25, f"JPEG artefact removal gained only {gain:.2f} dB"
    assert r.image.shape == jpeg.shape


# --- (c) inpainting --------------------------------------------------------------------------

def test_inpainting_fills_missing_pixels_better_than_the_mean(astronaut_crop):
    x = astronaut_crop
    g = torch.Generator().manual_seed(5)
    mask = (torch.rand(1, 1, 64, 64, generator=g) < 0.5).float()    # 1 = known
    missing = (mask == 0).expand_as(x)
    baseline = x.clone()
    baseline[missing] = x[~missing].mean()

    def psnr_missing(img):
        return float(-10 * torch.log10(((img - x)[missing] ** 2).mean()))

    r = neuralprior.inpaint(x * mask, mask, device="cpu", num_iter=300, stop="none", seed=0)
    ours, base = psnr_missing(r.image), psnr_missing(baseline)
    # measured: about 27 dB against 15 dB for the mean fill
    assert ours > base + 6, f"inpainting: {ours:.2f} dB on missing pixels, mean fill {base:.2f} dB"
    # the known pixels are reproduced closely, too
    assert float(((r.image - x)[~missing] ** 2).mean()) < 10 ** (-2.5)


def test_inpainting_ignores_the_values_under_the_mask(astronaut_crop):
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 20:40, 20:40] = 0
    garbage = astronaut_crop.clone()
    garbage[..., 20:40, 20:40] = 1.0                               # the missing region holds junk
    a = neuralprior.inpaint(astronaut_crop, mask, device="cpu", num_iter=3, stop="none")
    b = neuralprior.inpaint(garbage, mask, device="cpu", num_iter=3, stop="none")
    assert torch.equal(a.image, b.image)


@pytest.mark.parametrize("mask, match", [(None, "needs a mask"), (torch.zeros(64, 64), "no known pixel"),
                                         (torch.ones(32, 64), "mask is 64x32")])
def test_inpainting_mask_errors(astronaut_crop, mask, match):
    with pytest.raises(NeuralPriorError, match=match):
        neuralprior.restore("inpaint", astronaut_crop, mask=mask, device="cpu", num_iter=1)


# --- (d) sizes -------------------------------------------------------------------------------

def test_denoise_keeps_odd_sizes(rng):
    y = torch.rand(1, 3, 37, 29, generator=rng)
    assert neuralprior.denoise(y, device="cpu", num_iter=2, stop="none").image.shape == (1, 3, 37, 29)


def test_three_dimensional_and_grayscale_inputs(rng):
    y = torch.rand(1, 21, 18, generator=rng)                        # (C, H, W), one channel
    r = neuralprior.denoise(y, device="cpu", num_iter=2, stop="none")
    assert r.image.shape == (1, 1, 21, 18)


@pytest.mark.parametrize("factor", [2, 3])
def test_super_resolve_multiplies_the_size(factor, rng):
    y = torch.rand(1, 3, 37, 29, generator=rng)
    r = neuralprior.super_resolve(y, factor, device="cpu", num_iter=2, stop="none")
    assert r.image.shape == (1, 3, 37 * factor, 29 * factor)


def test_inpaint_and_jpeg_keep_odd_sizes(rng):
    y = torch.rand(1, 3, 19, 23, generator=rng)
    mask = torch.ones(19, 23)
    mask[5:9, 5:9] = 0
    assert neuralprior.inpaint(y, mask, device="cpu", num_iter=2, stop="none").image.shape == (1, 3, 19, 23)
    assert neuralprior.remove_jpeg_artifacts(y, device="cpu", num_iter=2, stop="none").image.shape == (1, 3, 19, 23)
    assert neuralprior.reconstruct(y, device="cpu", num_iter=2).image.shape == (1, 3, 19, 23)


def test_image_smaller_than_the_network_multiple(rng):
    y = torch.rand(1, 3, 5, 4, generator=rng)                       # padded to 2 x multiple, cropped back
    r = quick(y, num_iter=2)
    assert r.image.shape == (1, 3, 5, 4)


# --- (e) history -----------------------------------------------------------------------------

def test_history_has_one_entry_per_iteration(astronaut_crop):
    noisy = add_noise(astronaut_crop, 0.1, seed=2)
    r = quick(noisy, num_iter=15, x_true=astronaut_crop)
    assert r.iterations_run == 15
    assert len(r.history["loss"]) == 15
    assert len(r.history["psnr"]) == 15 and len(r.history["psnr_raw"]) == 15
    assert all(math.isfinite(v) for v in r.history["loss"] + r.history["psnr"])
    best_psnr, best_it = r.oracle_best
    assert best_psnr == max(r.history["psnr"])
    assert r.history["psnr"][best_it] == best_psnr
    assert r.stopped_at == 14 and "iteration limit" in r.reason
    assert r.history["psnr"][-1] == pytest.approx(psnr(r.image, astronaut_crop), abs=1e-4)


def test_history_without_ground_truth(astronaut_crop):
    r = quick(astronaut_crop, num_iter=4)
    assert set(r.history) == {"loss"}
    assert r.oracle_best is None


def test_loss_decreases(astronaut_crop):
    r = quick(astronaut_crop, num_iter=60, config=FitConfig(num_iter=60, reg_noise_std=0, ema=0))
    assert sum(r.history["loss"][-5:]) < 0.3 * sum(r.history["loss"][:5])


def test_result_metadata(astronaut_crop):
    r = quick(astronaut_crop, num_iter=3)
    assert r.device == "cpu" and r.precision == "float32"
    assert r.config["num_iter"] == 3
    assert r.image.dtype == torch.float32 and r.image.device.type == "cpu"
    assert 0 <= float(r.image.min()) and float(r.image.max()) <= 1
    assert r.seconds > 0 and not r.interrupted


# --- (f) the ground truth never influences the result ----------------------------------------

def test_x_true_does_not_change_the_result(astronaut_crop):
    noisy = add_noise(astronaut_crop, 0.1, seed=3)
    a = quick(noisy, num_iter=12, seed=7)
    b = quick(noisy, num_iter=12, seed=7, x_true=astronaut_crop)
    assert torch.equal(a.image, b.image)
    assert a.history["loss"] == b.history["loss"]


def test_x_true_of_the_wrong_size_raises(astronaut_crop):
    with pytest.raises(NeuralPriorError, match="ground truth is 32x32"):
        quick(astronaut_crop, x_true=astronaut_crop[..., :32, :32])


# --- (g) divergence guard --------------------------------------------------------------------

class NaNAt:
    """Identity, except that its ``bad_call``-th call returns NaN (or an absurd value)."""

    def __init__(self, bad_call: int, value: float = float("nan")):
        self.calls, self.bad_call, self.value = 0, bad_call, value

    def __call__(self, x):
        self.calls += 1
        return x * self.value if self.calls - 1 == self.bad_call else x


@pytest.mark.parametrize("guard_jump_case", [False, True], ids=["nan", "jump"])
def test_guard_restores_weights_and_halves_lr(astronaut_crop, guard_jump_case):
    bad = 20 if guard_jump_case else 5
    op = NaNAt(bad, value=50.0 if guard_jump_case else float("nan"))
    states: list[FitState] = []
    r = quick(astronaut_crop, op, num_iter=30, x_true=astronaut_crop, callback=states.append,
              config=FitConfig(num_iter=30, lr=0.01))
    loss = r.history["loss"]
    assert len(loss) == 30 and len(r.history["psnr"]) == 30
    assert (math.isnan(loss[bad]) if not guard_jump_case else loss[bad] > 100 * loss[bad - 1])
    assert torch.isfinite(r.image).all()
    lrs = {s.iteration: s.lr for s in states}
    assert bad not in lrs                                          # the rejected step is not reported
    assert lrs[bad - 1] == pytest.approx(0.01)
    assert lrs[bad + 1] == pytest.approx(0.005)                      # halved after the bad step
    assert lrs[29] == pytest.approx(0.005)
    assert all(math.isfinite(v) for i, v in enumerate(loss) if i != bad)


class ScaledFrom:
    """Identity until its ``call``-th call, then times ``factor`` for good: the loss level changes for a
    reason other than the weights (as a perturbation made stronger, or an operator swapped, would)."""

    def __init__(self, call: int, factor: float):
        self.calls, self.call, self.factor = 0, call, factor

    def __call__(self, x):
        self.calls += 1
        return x * self.factor if self.calls - 1 >= self.call else x


def test_guard_takes_a_lasting_change_of_the_loss_as_its_new_level(astronaut_crop):
    """A jump measured again at the restored weights is not a divergence: one rollback, then the fit goes on
    at the full lr and fits the changed problem (the guard used to halve lr at every step from then on)."""
    op = ScaledFrom(20, 3.0)
    states: list[FitState] = []
    r = quick(astronaut_crop, op, num_iter=60, callback=states.append, config=FitConfig(num_iter=60, lr=0.01))
    loss = r.history["loss"]
    assert loss[20] > 10 * loss[19] and loss[21] > 10 * loss[19]     # the jump, then the same at the old weights
    lrs = {s.iteration: s.lr for s in states}
    assert 20 not in lrs and set(range(21, 60)) <= set(lrs)        # one step rejected, every later one taken
    assert lrs[21] == pytest.approx(0.01) and lrs[59] == pytest.approx(0.01)   # the halving undone at once
    assert loss[59] < 0.2 * loss[21]                               # it fits the changed problem


def test_repeated_nan_keeps_halving_lr(astronaut_crop):
    calls = {"n": 0}

    def op(x):                                                     # NaN on calls 3, 4 and 5
        calls["n"] += 1
        return x * float("nan") if 4 <= calls["n"] <= 6 else x

    states = []
    r = quick(astronaut_crop, op, num_iter=10, callback=states.append)
    assert [s.lr for s in states if s.iteration > 6][0] == pytest.approx(0.01 / 8)
    assert torch.isfinite(r.image).all()


def test_without_guard_nan_propagates(astronaut_crop):
    r = quick(astronaut_crop, NaNAt(2), num_iter=5, config=FitConfig(num_iter=5, guard=False, ema=0))
    assert math.isnan(r.history["loss"][2])
    assert math.isnan(r.history["loss"][4])                         # the weights are NaN from then on


def test_an_always_nan_operator_raises(astronaut_crop):
    with pytest.raises(NeuralPriorError, match="before the first iteration"):
        quick(astronaut_crop, lambda x: x * float("nan"), num_iter=4)


def test_absurd_lr_does_not_produce_nan(astronaut_crop):
    r = quick(astronaut_crop, num_iter=40, config=FitConfig(num_iter=40, lr=10))
    assert torch.isfinite(r.image).all()
    assert all(math.isfinite(v) for v in r.history["loss"])


# --- (h) time limit --------------------------------------------------------------------------

def test_time_limit_stops_early(astronaut_crop):
    r = quick(astronaut_crop, num_iter=1_000_000, time_limit=0.3)
    assert "time limit" in r.reason
    assert 1 <= r.iterations_run < 1_000_000
    assert r.seconds < 30


def test_zero_time_limit_runs_exactly_one_iteration(astronaut_crop):
    r = quick(astronaut_crop, num_iter=50, time_limit=0)
    assert r.iterations_run == 1 and r.stopped_at == 0


# --- (i) any differentiable callable is an operator -------------------------------------------

def test_colourisation_with_a_callable_operator(astronaut_crop):
    gray = astronaut_crop.mean(1, keepdim=True)
    r = quick(gray, lambda x: x.mean(1, keepdim=True), num_iter=100, net=tiny_net(out_channels=3))
    assert r.image.shape == (1, 3, 64, 64)                          # three channels out of one
    assert r.history["loss"][-1] < 0.1 * r.history["loss"][0]
    assert psnr(r.image.mean(1, keepdim=True), gray) > 22           # measured: 26 dB


def test_explicit_image_shape_and_blur_operator(astronaut_crop):
    from neuralprior.operators import Blur, gaussian_kernel

    op = Blur(gaussian_kernel(1.0))
    y = op(astronaut_crop)
    r = quick(y, op, num_iter=3, img_shape=(64, 64))
    assert r.image.shape == (1, 3, 64, 64)


@pytest.mark.parametrize("overrides", [dict(loss="l1"), dict(loss="poisson"), dict(tv_weight=0.1),
                                       dict(lr_decay_to=0.1), dict(ema=0.0), dict(ema_warmup=False),
                                       dict(reg_noise_std=0.0), dict(channels_last=True),
                                       dict(precision="bfloat16"), dict(optimizer="nadam"),
                                       dict(optimizer="radam")])
def test_config_variants_run(astronaut_crop, overrides):
    r = quick(astronaut_crop, config=FitConfig(num_iter=3, **overrides))
    assert r.image.shape == astronaut_crop.shape and torch.isfinite(r.image).all()


def test_betas_reach_the_optimiser(astronaut_crop):
    def run(**betas):
        return quick(astronaut_crop, config=FitConfig(num_iter=4, **betas))
    default, again, other = run(), run(betas=(0.9, 0.999)), run(betas=(0.5, 0.9))
    assert torch.equal(default.image, again.image)          # PyTorch's defaults are the field's default
    assert other.config["betas"] == (0.5, 0.9) and not torch.equal(default.image, other.image)
    assert FitConfig.from_dict(dict(FitConfig(betas=(0.8, 0.99)).to_dict(), betas=[0.8, 0.99])).betas == (0.8, 0.99)
    for bad in [(0.9,), (0.9, 1.0), (-0.1, 0.9)]:
        with pytest.raises(NeuralPriorError, match="betas must be two numbers"):
            run(betas=bad)


def test_channels_last_auto_goes_with_reduced_precision_only(astronaut_crop):
    used = {p: quick(astronaut_crop, config=FitConfig(num_iter=2, precision=p, channels_last="auto")).config
            for p in ("float32", "bfloat16")}
    assert used["float32"]["channels_last"] is False and used["bfloat16"]["channels_last"] is True
    assert quick(astronaut_crop, config=FitConfig(num_iter=2, channels_last=True)).config["channels_last"] is True
    with pytest.raises(NeuralPriorError, match="channels_last must be"):
        quick(astronaut_crop, config=FitConfig(num_iter=2, channels_last="yes"))


def test_lr_decay_follows_a_cosine(astronaut_crop):
    states = []
    quick(astronaut_crop, config=FitConfig(num_iter=20, lr=0.01, lr_decay_to=0.1), callback=states.append)
    lrs = [s.lr for s in states]
    assert lrs[0] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[10] == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))           # half way: the mean of both ends
    assert 0.001 < lrs[-1] < 0.0011


def test_meshgrid_input_and_given_latent(astronaut_crop):
    net = tiny_net(in_channels=2)
    r = quick(astronaut_crop, net=net, config=FitConfig(num_iter=2, input_kind="meshgrid"))
    assert r.image.shape == astronaut_crop.shape
    with pytest.raises(ValueError, match="meshgrid input has 2 channels"):
        quick(astronaut_crop, config=FitConfig(num_iter=2, input_kind="meshgrid"))
    z = torch.rand(1, 8, 64, 64)
    a = quick(astronaut_crop, latent=z, seed=0)
    b = quick(astronaut_crop, latent=z, seed=1, config=FitConfig(num_iter=10, reg_noise_std=0))
    c = quick(astronaut_crop, latent=z, seed=2, config=FitConfig(num_iter=10, reg_noise_std=0))
    assert a.image.shape == astronaut_crop.shape
    assert torch.equal(b.image, c.image)                           # given z, no perturbation: the seed is unused


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(config=FitConfig(num_iter=2, loss="huber")), NeuralPriorError, "unknown loss"),
    (dict(config=FitConfig(num_iter=2, precision="float8")), NeuralPriorError, "unknown precision"),
    (dict(config=FitConfig(num_iter=2, optimizer="sgd")), NeuralPriorError, "unknown optimizer 'sgd'; use adam"),
    (dict(config=FitConfig(num_iter=2, input_kind="zeros")), ValueError, "unknown input kind"),
    (dict(device="tpu:0"), NeuralPriorError, "unknown device"),
])
def test_bad_settings_raise(astronaut_crop, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fit(astronaut_crop, net=tiny_net(), **{"device": "cpu", **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_requested_without_cuda_raises(astronaut_crop):
    with pytest.raises(NeuralPriorError, match="CUDA is not available"):
        fit(astronaut_crop, net=tiny_net(), config=FitConfig(num_iter=1), device="cuda")


@pytest.mark.parametrize("y, exc", [([[0.0]], TypeError), (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), TypeError),
                                    (torch.zeros(8, 8), NeuralPriorError), (torch.zeros(1, 3, 1, 8), NeuralPriorError)])
def test_bad_observations_raise(y, exc):
    with pytest.raises(exc):
        fit(y, net=tiny_net(), config=FitConfig(num_iter=1), device="cpu")


# --- (j) stopping rules ----------------------------------------------------------------------

@pytest.mark.parametrize("spec, cls", [("auto", WindowedVariance), ("none", StoppingRule), (None, StoppingRule),
                                       ("5", FixedIterations), (5, FixedIterations), (" 7 ", FixedIterations)])
def test_make_stopping_rule_types(spec, cls):
    rule = make_stopping_rule(spec)
    assert type(rule) is cls
    if cls is FixedIterations:
        assert rule.n == int(spec)


def test_make_stopping_rule_passes_a_rule_through_and_configures_auto():
    rule = FixedIterations(3)
    assert make_stopping_rule(rule) is rule
    auto = make_stopping_rule("auto", window=7, patience=11)
    assert (auto.window, auto.patience) == (7, 11)


@pytest.mark.parametrize("spec", ["0", "-3", "abc", 0, -3, "2.5", 2.5, "", "Auto"])
def test_make_stopping_rule_rejects_bad_specs(spec):
    with pytest.raises(ValueError):
        make_stopping_rule(spec)


def _variance_sequence(n=1000, turn=150, seed=0):
    """Estimates whose spread over time first shrinks (learning) and then grows (fitting noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 8, 8, generator=g)
    for t in range(n):
        amp = 0.005 + abs(t - turn) / 1500
        yield t, base + amp * torch.randn(base.shape, generator=g)


def test_windowed_variance_stops_after_patience_near_the_minimum():
    rule = WindowedVariance(window=10, patience=40, min_iterations=20)
    stopped = None
    for t, est in _variance_sequence():
        d = rule.update(t, est)
        if d.best and t >= 20:                                       # judged by the variance from min_iterations on
            assert rule.best_iteration == t
        if d.stop:
            stopped = t
            break
    assert stopped is not None, "the rule never stopped"
    assert 145 <= rule.best_iteration <= 165                       # the window lags the turning point by <= 10
    assert stopped == rule.best_iteration + 40
    assert "minimum at iteration" in d.reason
    # the reported variances are lowest around the turn
    its, vs = zip(*rule.variances)
    assert its[vs.index(min(vs))] == rule.best_iteration


def test_windowed_variance_waits_for_window_and_min_iterations():
    rule = WindowedVariance(window=10, patience=5, min_iterations=50)
    for t, est in _variance_sequence(n=50, turn=0):                # variance only grows
        d = rule.update(t, est)
        assert not d.stop and d.best                               # too early to judge: the latest is the best
    assert rule.best_iteration == -1                                # no variance minimum recorded yet
    assert len(rule.variances) == 50 - 9                            # one value per full window


def test_windowed_variance_on_a_constant_sequence_stops():
    rule = WindowedVariance(window=4, patience=10, min_iterations=0)
    x = torch.full((1, 3, 16, 16), 0.5)
    decisions = [rule.update(t, x) for t in range(30)]
    first_stop = next(t for t, d in enumerate(decisions) if d.stop)
    assert rule.best_iteration == 3 and first_stop == 13


def test_sure_floor_ends_the_run_before_min_iterations_only():
    """loss_floor: a mean SURE value below 0 over the window, before min_iterations, ends the run on the latest
    estimate; positive values, a window not yet full, or the same values after min_iterations change nothing."""
    x = torch.full((1, 3, 16, 16), 0.5)

    def run(losses, floor=True, min_iterations=100):
        rule = WindowedVariance(window=5, patience=1000, min_iterations=min_iterations, loss_floor=floor)
        for t, value in enumerate(losses):
            rule.observe_loss(value)
            d = rule.update(t, x)
            if d.stop:
                return t, d
        return None, None

    falling = [0.01 - 0.0005 * t for t in range(60)]       # the window's mean is first below 0 at t = 23
    t, d = run(falling)
    assert t == 23 and d.best and "SURE" in d.reason and "before iteration 100" in d.reason
    assert run(falling, floor=False) == (None, None)        # off: the rule alone (nothing to judge before 100)
    assert run([abs(v) for v in falling]) == (None, None)    # never below 0
    assert run([-1.0] * 3) == (None, None)                   # the window is not full
    assert run(falling, min_iterations=10) == (None, None)   # from min_iterations on the variance alone judges
    rule = WindowedVariance(window=5, loss_floor=True)       # the losses kept: the last `window`, and saved
    for v in range(8):
        rule.observe_loss(float(v))
    assert rule.losses == [3.0, 4.0, 5.0, 6.0, 7.0]
    restored = WindowedVariance(window=5, loss_floor=True)
    restored.load_state_dict(rule.state_dict())
    assert restored.losses == rule.losses
    old = {k: v for k, v in rule.state_dict().items() if k not in ("loss_floor", "losses")}
    restored.load_state_dict(old)                            # saved before the floor existed: off
    assert not restored.loss_floor and restored.losses == []


def test_windowed_variance_shrinks_large_estimates():
    rule = WindowedVariance(window=2, max_pixels=64)
    rule.update(0, torch.rand(1, 3, 40, 40))
    assert rule._buf.shape[-2] * rule._buf.shape[-1] <= 64


def test_windowed_variance_is_per_pixel_at_any_size():
    """Pooling bounds the memory but not the scale: iid changes of std 0.01 read as variance 1e-4 at any size."""
    g = torch.Generator().manual_seed(0)
    for size in (32, 128, 256):                                     # pooled by 1, 4 and 8 (max_pixels 32 x 32)
        rule = WindowedVariance(window=20, min_iterations=0, max_pixels=32 * 32)
        base = torch.rand(1, 3, size, size, generator=g)
        for t in range(20):
            rule.update(t, base + 0.01 * torch.randn(base.shape, generator=g))
        assert rule.pool == size // 32
        assert rule.variances[-1][1] == pytest.approx(1e-4, rel=0.1)


def test_pixel_sample_reads_smooth_changes_at_their_full_resolution_variance():
    """Changes smooth over the image (a slow drift, as in a converging super-resolution fit): pooling and
    scaling by the pool factor squared reads them as f**2 times their variance; a pixel sample reads them
    as they are, at any size, with the memory bounded alike."""
    g = torch.Generator().manual_seed(0)
    for size in (64, 256):
        base = torch.rand(1, 3, size, size, generator=g)
        pooled = WindowedVariance(window=20, min_iterations=0, max_pixels=32 * 32)
        sampled = WindowedVariance(window=20, min_iterations=0, max_pixels=32 * 32, sample="pixels")
        for t in range(20):
            est = base + 0.01 * t                                   # the same change at every pixel: std 0.0577
            pooled.update(t, est)
            sampled.update(t, est)
        assert sampled._buf[0].numel() == 3 * 32 * 32 and sampled.pool == 1
        assert sampled.variances[-1][1] == pytest.approx(0.01 ** 2 * (20 ** 2 - 1) / 12, rel=1e-3)
        assert pooled.variances[-1][1] == pytest.approx((size // 32) ** 2 * sampled.variances[-1][1], rel=1e-3)
    # iid changes read the same both ways; a small image is kept whole
    iid = WindowedVariance(window=20, min_iterations=0, max_pixels=32 * 32, sample="pixels")
    for t in range(20):
        iid.update(t, base + 0.01 * torch.randn(base.shape, generator=g))
    assert iid.variances[-1][1] == pytest.approx(1e-4, rel=0.1)
    whole = WindowedVariance(window=2, max_pixels=32 * 32, sample="pixels")
    whole.update(0, torch.rand(1, 3, 16, 16))
    assert whole._buf.shape[-2:] == (16, 16)
    with pytest.raises(ValueError, match="sample"):
        WindowedVariance(sample="corners")


def test_absolute_settled_threshold_without_a_noise_level():
    """``settled`` (0-1 scale) ends the run at a new minimum below it where no noise level is known;
    with a noise level and a tolerance, the relative threshold rules instead."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 8, 8, generator=g)
    seq = [base + 0.05 / (1 + t) * torch.randn(base.shape, generator=g) for t in range(400)]
    rule = WindowedVariance(window=5, patience=1000, min_iterations=10, settled=0.001)
    stop = next(t for t, x in enumerate(seq) if rule.update(t, x).stop)
    d = rule.variances[-1]
    assert d[0] == stop and rule.best_variance ** 0.5 <= 0.001 and rule.best_iteration == stop
    assert "grey levels" in WindowedVariance(window=5, min_iterations=10, settled=0.001).judge(20, 1e-8).reason
    looser = WindowedVariance(window=5, patience=1000, min_iterations=10, settled=0.002)
    assert next(t for t, x in enumerate(seq) if looser.update(t, x).stop) < stop
    relative = WindowedVariance(window=5, patience=1000, min_iterations=10, settled=0.002, tolerance=0.01)
    relative.noise_level = 0.1                                      # 0.01 x 0.1 = 0.001: as strict as `rule`
    assert relative.settled_std() == pytest.approx(0.001)
    assert next(t for t, x in enumerate(seq) if relative.update(t, x).stop) == stop
    assert WindowedVariance().settled_std() == 0


def first_judged_stop(rule, variance, residual=None, iterations: int = 300):
    """(iteration, best iteration, reason) of the first stop of ``rule`` judging the windowed variance
    ``variance(it)`` (and the residual ``residual(it)``) at each iteration; (None, best, "") if none."""
    for it in range(iterations):
        if residual is not None:
            rule.residual = residual(it)
        d = rule.judge(it, variance(it))
        if d.stop:
            return it, rule.best_iteration, d.reason
    return None, rule.best_iteration, ""


def test_windowed_std_relative_to_the_residual_turns_where_the_residual_falls_faster():
    """With ``residual_power`` p and a residual, the rule minimises std / residual ** p: a std that falls
    at every step while the residual, from iteration 100, falls faster than std ** (1 / p) gives a
    minimum at 100, returned, and a stop ``patience`` after it; the std alone never turns."""
    def run(**kw):
        return first_judged_stop(WindowedVariance(window=5, patience=50, min_iterations=0, **kw),
                                 lambda it: (0.01 * 0.99 ** it) ** 2,
                                 residual=lambda it: 0.1 * 0.995 ** min(it, 100) * 0.98 ** max(it - 100, 0))

    assert run(residual_power=2) == (150, 100, "windowed std / residual^2 has not decreased for 50 iterations "
                                               "(minimum at iteration 100)")
    assert run(residual_power=0) == (None, 299, "")              # the std itself: a new minimum every time


def test_rise_lets_a_plateau_run_on_and_ends_at_a_turn():
    """``rise``: no new minimum for ``patience`` iterations is not enough, the watched std must also have
    risen ``rise`` above its minimum: a plateau runs on, a turn ends the run."""
    def std(it):        # falls to 1 at 50, a plateau (tiny wiggles above 1) to 150, then rises 1% a step
        return 2 - it / 50 if it < 50 else 1 + 0.001 * (it % 2) if it < 150 else 1.01 ** (it - 150)

    def run(**kw):
        return first_judged_stop(WindowedVariance(window=5, patience=20, min_iterations=0, **kw),
                                 lambda it: std(it) ** 2)

    assert run()[:2] == (70, 50)                         # the patience alone: on the plateau
    stop, best, reason = run(rise=0.1)
    assert best == 50 and stop == 160 and std(stop) >= 1.1 > std(stop - 1)   # 10% above the minimum
    assert reason.endswith("and it has risen 10% above that minimum")
    assert run(rise=0.5)[0] == 191                       # 1.01^41 = 1.50
    with pytest.raises(ValueError, match="rise"):
        WindowedVariance(rise=-0.1)


def test_residual_to_the_observation_and_its_state():
    y = torch.rand(1, 3, 16, 16)
    rule = WindowedVariance(window=3, min_iterations=0, residual_power=1.5)
    rule.observation = y
    for it in range(5):
        rule.update(it, y + 0.1)
    assert rule.residual == pytest.approx(0.1, rel=1e-4)
    state = rule.state_dict()
    assert "observation" not in state and state["residual"] == rule.residual
    other = WindowedVariance()
    other.load_state_dict(state)
    assert other.residual_power == 1.5 and other.best_variance == rule.best_variance
    older = {k: v for k, v in WindowedVariance(window=3).state_dict().items() if k not in ("residual_power", "rise")}
    resumed = WindowedVariance(residual_power=1.5, rise=0.05)
    resumed.load_state_dict(older)          # a checkpoint from before the ratio: it goes on watching the std itself
    assert (resumed.residual_power, resumed.rise) == (0, 0)
    off = WindowedVariance(window=3)                       # residual_power 0: no residual is measured
    off.observation = y
    off.update(0, y + 0.1)
    assert off.residual is None
    with pytest.raises(ValueError, match="residual_power"):
        WindowedVariance(residual_power=-1)


def test_fit_gives_the_observation_to_a_residual_rule_only_where_it_is_the_image():
    from neuralprior.operators import Mask

    y = torch.rand(1, 3, 32, 32)
    net = SkipNet(in_channels=4, out_channels=3, channels_down=[4, 4], channels_up=[4, 4], channels_skip=2)
    cfg = FitConfig(num_iter=3, lr=0.01)
    rule = WindowedVariance(window=2, min_iterations=0, residual_power=2)
    fit(y, net=net, config=cfg, stop=rule, seed=0)
    assert rule.observation is not None and rule.residual > 0
    masked = WindowedVariance(window=2, min_iterations=0, residual_power=2)
    mask = (torch.rand(1, 1, 32, 32) > 0.5).float()
    fit(y * mask, Mask(mask), net=net, config=cfg, stop=masked, seed=0)
    assert masked.observation is None and masked.residual is None
    plain = WindowedVariance(window=2, min_iterations=0)
    fit(y, net=net, config=cfg, stop=plain, seed=0)
    assert plain.observation is None


def test_pixel_sample_state_round_trip_and_older_states():
    seq = [(t, torch.rand(1, 3, 16, 16) / (1 + t)) for t in range(60)]
    a = WindowedVariance(window=5, patience=20, min_iterations=5, max_pixels=64, sample="pixels", settled=0.01)
    for t, est in seq[:30]:
        a.update(t, est)
    b = WindowedVariance(sample="pixels")
    b.load_state_dict(a.state_dict())
    for t, est in seq[30:]:
        assert a.update(t, est) == b.update(t, est)
    old = WindowedVariance(window=5, max_pixels=64)                 # a state saved before the sample existed
    for t, est in seq[:10]:
        old.update(t, est)
    state = {k: v for k, v in old.state_dict().items() if k not in ("sample", "settled", "_pixels")}
    c = WindowedVariance(sample="pixels", max_pixels=64)
    c.load_state_dict(state)
    assert c.sample == "pool"                                       # its variances were pooled: it goes on pooling
    c.update(10, seq[10][1])
    assert c._buf.shape[-2:] == (8, 8)


def test_windowed_variance_resumes_a_state_saved_before_the_scaling():
    seq = [(t, torch.full((1, 1, 8, 8), 1.0 / (1 + t)) + 0.01 * torch.rand(1, 1, 8, 8)) for t in range(40)]
    a = WindowedVariance(window=5, patience=20, min_iterations=5, max_pixels=16)        # pooled by 2
    for t, est in seq[:20]:
        a.update(t, est)
    old = a.state_dict()
    del old["pool"]                                                 # as saved then: variances not scaled
    old["best_variance"] /= 4
    old["variances"] = [(i, v / 4) for i, v in old["variances"]]
    b = WindowedVariance()
    b.load_state_dict(old)
    for t, est in seq[20:]:
        assert a.update(t, est) == b.update(t, est)
    assert b.best_variance == pytest.approx(a.best_variance) and len(b.variances) == len(a.variances)


def test_windowed_variance_state_round_trip():
    a = WindowedVariance(window=5, patience=20, min_iterations=5)
    seq = list(_variance_sequence(n=120, turn=60))
    for t, est in seq[:70]:
        a.update(t, est)
    b = WindowedVariance()
    b.load_state_dict({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in a.state_dict().items()})
    for t, est in seq[70:]:
        da, db = a.update(t, est), b.update(t, est)
        assert da == db
    assert a.best_iteration == b.best_iteration


def test_reset_clears_the_rule():
    rule = WindowedVariance(window=3, min_iterations=0)
    for t, est in _variance_sequence(n=10):
        rule.update(t, est)
    rule.reset()
    assert rule.best_iteration == -1 and rule.variances == [] and rule._buf is None


def test_fixed_iterations_stops_the_loop(astronaut_crop):
    r = quick(astronaut_crop, num_iter=100, stop=7)
    assert r.iterations_run == 7 and r.stopped_at == 6
    assert "fixed iteration count 7" in r.reason
    r = quick(astronaut_crop, num_iter=100, stop=FixedIterations(4))
    assert r.iterations_run == 4


def test_fit_returns_the_estimate_the_rule_keeps(astronaut_crop):
    class BestAtThreeStopAtEight(StoppingRule):
        def update(self, iteration, estimate):
            return Decision(best=iteration == 3, stop=iteration == 8, reason="test rule")

    estimates = {}
    r = quick(astronaut_crop, num_iter=100, stop=BestAtThreeStopAtEight(),
              callback=lambda s: estimates.__setitem__(s.iteration, s.estimate.clone()))
    assert r.iterations_run == 9 and r.stopped_at == 3 and r.reason == "test rule"
    assert torch.equal(r.image, estimates[3].clamp(0, 1))
    assert not torch.equal(r.image, estimates[8].clamp(0, 1))


def test_auto_stop_runs_in_the_loop(astronaut_crop):
    # lr 0, no perturbation, no averaging: every estimate is the same, the windowed variance is 0 from
    # the first full window (iteration 4) on and never decreases again, so the loop stops `patience` later
    rule = WindowedVariance(window=5, patience=5, min_iterations=0)
    r = quick(astronaut_crop, stop=rule, config=FitConfig(num_iter=100, lr=0.0, reg_noise_std=0.0, ema=0.0))
    assert rule.best_iteration == 4
    assert r.iterations_run == 10 and r.stopped_at == 4
    assert "windowed variance has not decreased for 5 iterations" in r.reason


def test_auto_stop_by_name(astronaut_crop):
    r = quick(astronaut_crop, stop="auto", config=FitConfig(num_iter=20))
    assert r.iterations_run == 20                                  # min_iterations (100) not reached


# --- (k) interrupts and callbacks ------------------------------------------------------------

def test_keyboard_interrupt_returns_the_best_so_far(astronaut_crop):
    def cb(state):
        if state.iteration == 5:
            raise KeyboardInterrupt

    r = quick(astronaut_crop, num_iter=50, callback=cb)
    assert r.interrupted is True and r.reason == "interrupted"
    assert r.iterations_run == 6
    assert r.stopped_at == 5
    assert r.image.shape == astronaut_crop.shape


def test_callback_every(astronaut_crop):
    seen = []
    quick(astronaut_crop, num_iter=10, callback=lambda s: seen.append(s.iteration), callback_every=4)
    assert seen == [0, 4, 8]


def test_callback_state_contents(astronaut_crop):
    states = []
    quick(astronaut_crop, num_iter=3, callback=states.append, x_true=astronaut_crop)
    s = states[-1]
    assert s.iteration == 2 and s.num_iter == 3 and s.best_iteration == 2
    assert s.output.shape == s.estimate.shape == astronaut_crop.shape
    assert s.psnr is not None and s.elapsed > 0 and math.isfinite(s.loss)


# --- memory is checked before the run -------------------------------------------------------

def test_an_image_that_would_not_fit_is_refused_before_starting(monkeypatch):
    import neuralprior.memory as memory

    monkeypatch.setattr(memory, "_free_bytes", lambda device: 200 * 2**20)     # pretend 200 MiB are free
    with pytest.raises(NeuralPriorError, match=r"needs about .* GiB .* free"):
        neuralprior.denoise(torch.rand(1, 3, 1024, 1024), device="cpu", num_iter=1)


def test_memory_estimate_grows_with_pixels_and_width():
    from neuralprior.memory import estimate_fit_bytes

    light, paper = tiny_net(), SkipNet()
    assert estimate_fit_bytes(light, (128, 128)) > 3 * estimate_fit_bytes(light, (64, 64))
    assert estimate_fit_bytes(paper, (128, 128)) > estimate_fit_bytes(light, (128, 128))
    # the paper network on a 2048x2048 image needs more than this machine class (24 GiB) has
    assert estimate_fit_bytes(paper, (2048, 2048)) > 24 * 2**30
    # the SURE loss keeps two forward passes for one backward
    assert estimate_fit_bytes(light, (128, 128), passes=2) > 1.5 * estimate_fit_bytes(light, (128, 128))


def test_memory_estimate_from_a_small_real_run_equals_the_meta_device_count():
    """The estimate runs the network at 2m x 2m and scales by area: the same activation count as a run of the
    whole size on the meta device, for every preset network and odd image sizes."""
    import math

    from neuralprior.inspect_net import summarize
    from neuralprior.memory import estimate_fit_bytes
    from neuralprior.networks.layers import Concat
    from neuralprior.presets import PRESETS

    seen = set()
    for p in PRESETS:
        key = (p.network, repr(sorted(p.network_args.items())))
        if key in seen:
            continue
        seen.add(key)
        net = p.build_network(out_channels=3)
        for size in ((96, 160), (375, 500)):
            layers, _, _ = summarize(net, size, also=(Concat,))          # the meta device, whole size
            activations = sum(math.prod(layer.shape) for layer in layers) * 4
            without = estimate_fit_bytes(net, size) - 1.6 * activations
            assert estimate_fit_bytes(net, size, passes=2) - estimate_fit_bytes(net, size) == pytest.approx(
                1.6 * activations, abs=2), (p.task, p.name, size)   # int() rounds
            assert without > 0


def test_windowed_variance_stops_once_the_estimate_settles():
    """With a noise level known, the rule also stops when the estimates barely move any more."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 8, 8, generator=g)
    rule = WindowedVariance(window=5, patience=1000, min_iterations=10, tolerance=0.01)
    rule.noise_level = 0.1                                          # settled: windowed std <= 0.001
    stopped = None
    for t in range(400):
        d = rule.update(t, base + 0.05 / (1 + t) * torch.randn(base.shape, generator=g))   # ever smaller moves
        if d.stop:
            stopped = t
            break
    assert stopped is not None and d.best and "settled" in d.reason
    assert rule.best_variance ** 0.5 <= 0.001
    # without a noise level (or with tolerance 0) the same sequence never stops early
    quiet = WindowedVariance(window=5, patience=1000, min_iterations=10, tolerance=0.01)
    assert not any(quiet.update(t, base + 0.05 / (1 + t) * torch.randn(base.shape, generator=g)).stop
                   for t in range(stopped + 1))


def test_settled_threshold_scales_as_a_power_of_the_noise_level():
    from neuralprior.stopping import REFERENCE_NOISE
    for power in (1.0, 3.0):                  # at the reference level every power means tolerance x sigma
        rule = WindowedVariance(tolerance=0.008, tolerance_power=power)
        rule.noise_level = REFERENCE_NOISE
        assert rule.settled_std() == pytest.approx(0.008 * REFERENCE_NOISE)
    rule = WindowedVariance(tolerance=0.008, tolerance_power=1.0)
    rule.noise_level = 0.5 * REFERENCE_NOISE
    assert rule.settled_std() == pytest.approx(0.008 * 0.5 * REFERENCE_NOISE)   # power 1: proportional
    rule = WindowedVariance(tolerance=0.008, tolerance_power=3.0)
    rule.noise_level = 2 * REFERENCE_NOISE
    assert rule.settled_std() == pytest.approx(8 * 0.008 * REFERENCE_NOISE)       # twice the noise: 8x
    rule.noise_level = 0.5 * REFERENCE_NOISE
    assert rule.settled_std() == pytest.approx(0.008 * REFERENCE_NOISE / 8)      # half the noise: 1/8
    rule.noise_level = None
    assert rule.settled_std() == 0
    # the same settling sequence: at power 3 strong noise counts as settled sooner, light noise later
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 8, 8, generator=g)
    seq = [base + 0.05 / (1 + t) * torch.randn(base.shape, generator=g) for t in range(3000)]
    stops = {}
    for power in (1.0, 3.0):
        for level in (0.5 * REFERENCE_NOISE, REFERENCE_NOISE, 2 * REFERENCE_NOISE):
            rule = WindowedVariance(window=5, patience=5000, min_iterations=10, tolerance=0.01, tolerance_power=power)
            rule.noise_level = level
            stops[power, level] = next(t for t, x in enumerate(seq) if rule.update(t, x).stop)
    lo, ref, hi = 0.5 * REFERENCE_NOISE, REFERENCE_NOISE, 2 * REFERENCE_NOISE
    assert stops[3.0, hi] < stops[1.0, hi] and stops[3.0, ref] == stops[1.0, ref] and stops[3.0, lo] > stops[1.0, lo]


def test_the_settled_stop_waits_until_the_std_stops_falling_fast():
    from neuralprior.stopping import REFERENCE_NOISE
    # windowed std 0.001 + 0.05 exp(-t / 20): below the threshold 0.01 from t = 35, but still falling fast
    std = [0.001 + 0.05 * math.exp(-t / 20) for t in range(400)]

    def stop(**kw):
        rule = WindowedVariance(min_iterations=10, patience=1000, tolerance=0.01 / REFERENCE_NOISE, **kw)
        rule.noise_level = REFERENCE_NOISE
        return next(t for t, s in enumerate(std) if rule.judge(t, s * s).stop)

    assert stop() == 35
    slow = stop(settle_lag=50, settle_ratio=0.8)       # then also std(t) >= 0.8 std(t - 50): from t = 154
    assert slow == 154 and std[slow] >= 0.8 * std[slow - 50] and std[slow - 1] < 0.8 * std[slow - 51]
    with pytest.raises(ValueError):
        WindowedVariance(settle_lag=-1)
    with pytest.raises(ValueError):
        WindowedVariance(settle_ratio=1.0)
    old = WindowedVariance(settle_lag=50, settle_ratio=0.8)          # a checkpoint saved before the option
    state = {k: v for k, v in WindowedVariance().state_dict().items() if not k.startswith("settle")}
    old.load_state_dict(state)
    assert (old.settle_lag, old.settle_ratio) == (0, 0.0)


# --- held-out pixels (the inpainting stop) ----------------------------------------------------

def test_split_mask_holds_out_a_fraction_of_the_known_pixels_only():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, 1, 64, 64, generator=g) > 0.5).float()
    fitted, held = split_mask(mask, 0.1, seed=3)
    assert torch.equal(fitted + held, mask)                     # disjoint, and together the known pixels
    assert float((held * (1 - mask)).sum()) == 0                # nothing missing is held out
    assert 0.07 < float(held.sum() / mask.sum()) < 0.13
    assert torch.equal(split_mask(mask, 0.1, seed=3)[1], held)  # the seed decides
    assert not torch.equal(split_mask(mask, 0.1, seed=4)[1], held)
    colour = mask.expand(1, 3, 64, 64)                           # a per-channel mask: the same positions in each
    h3 = split_mask(colour, 0.1, seed=3)[1]
    assert torch.equal(h3[:, 0], h3[:, 1]) and torch.equal(h3[:, 0], h3[:, 2])
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_mask(mask, 1.5)


def test_held_out_error_returns_the_estimate_nearest_the_held_out_pixels_and_stops_after_patience():
    target = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    held = torch.zeros_like(target)
    held[..., ::3, ::3] = 1
    other = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    rule = HeldOutError(target, held, patience=20, min_iterations=5)
    # estimates move towards the target until iteration 60, then away again
    decisions = []
    for t in range(200):
        a = abs(t - 60) / 100
        decisions.append(rule.update(t, (1 - a) * target + a * other))
        if decisions[-1].stop:
            break
    assert rule.best_iteration == 60
    assert len(decisions) == 81 and decisions[-1].stop and "held-out" in decisions[-1].reason
    assert all(d.best for d in decisions[:61]) and not any(d.best for d in decisions[61:])
    assert rule.errors[60][1] == pytest.approx(0.0, abs=1e-12)
    state = rule.state_dict()
    again = HeldOutError(target, held)
    again.load_state_dict(state)
    assert again.best_iteration == 60 and again.errors == rule.errors
    with pytest.raises(ValueError, match="at least one held-out pixel"):
        HeldOutError(target, torch.zeros_like(target))


def test_inpainting_auto_stop_never_fits_the_held_out_pixels_before_it_stops(astronaut_crop):
    """The fit is the same whatever the held-out pixels hold until the stop: only the stop looks at
    them. The stretch after it (a quarter of the iterations to the chosen estimate) fits every known pixel."""
    mask = (torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    _, held = split_mask(mask, 0.05, seed=0)                     # restore() holds out these with seed 0
    assert float(held.sum()) >= 64
    changed = torch.where(held.bool(), 1 - astronaut_crop, astronaut_crop)
    runs = [neuralprior.inpaint(x, mask, num_iter=12, device="cpu", seed=0) for x in (astronaut_crop, changed)]
    assert runs[0].history["loss"][:12] == runs[1].history["loss"][:12]
    assert all(a != b for a, b in zip(runs[0].history["loss"][12:], runs[1].history["loss"][12:]))
    assert len(runs[0].history["loss"]) == runs[0].iterations_run == 15 and runs[0].stopped_at == 14
    assert runs[0].reason == "iteration limit 12 reached; then 3 iterations on every known pixel from iteration 11"
    assert runs[0].config["held_out"] == dict(pixels=int(held.sum()), fraction=0.05, patience=500,
                                              best_iteration=11, stretch=3)
    # with stop="none" every known pixel is fitted: the changed pixels change the loss
    plain = [neuralprior.inpaint(x, mask, num_iter=3, stop="none", device="cpu") for x in (astronaut_crop, changed)]
    assert plain[0].history["loss"] != plain[1].history["loss"]
    assert "held_out" not in plain[0].config


def test_too_few_known_pixels_keep_the_windowed_variance():
    from neuralprior.operators import Mask
    from neuralprior.tasks import MIN_HELD_OUT, _hold_out

    y = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sparse = torch.zeros(1, 1, 64, 64)
    sparse[..., ::8, ::8] = 1                                   # 64 known pixels: about 3 would be held out
    op, rule = Mask(sparse), WindowedVariance()
    assert _hold_out(op, y, rule, dict(fraction=0.05, patience=500), seed=0) == (op, rule)
    dense = Mask(torch.ones(1, 1, 64, 64))
    op2, rule2 = _hold_out(dense, y, rule, dict(fraction=0.05, patience=500), seed=0)
    assert isinstance(rule2, HeldOutError) and rule2.count >= MIN_HELD_OUT and rule2.patience == 500
    assert float(op2.mask.sum()) == 64 * 64 - rule2.count


def _quick_held_out(monkeypatch, **held_out):
    """restore() with the default inpainting preset's held-out settings replaced by ``held_out``."""
    import neuralprior.tasks as tasks

    real = tasks.get_preset

    def patched(task, name="default", **kw):
        p = real(task, name, **kw)
        if task == "inpaint":
            p.held_out = dict(p.held_out, **held_out)
        return p
    monkeypatch.setattr(tasks, "get_preset", patched)


def test_the_held_out_stop_returns_the_estimate_nearest_the_held_out_observation(monkeypatch, astronaut_crop):
    _quick_held_out(monkeypatch, patience=4, min_iterations=1, stretch=0)
    mask = (torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    _, held = split_mask(mask, 0.05, seed=0)
    y = astronaut_crop * mask
    errors = []

    def watch(state):        # the error on the held-out pixels of the observation y, as the rule must see it
        errors.append(float(((state.estimate - y).square() * held).sum() / (held.sum() * 3)))
    r = neuralprior.inpaint(y, mask, num_iter=400, device="cpu", seed=0, callback=watch, lr=0.05)
    assert "held-out" in r.reason and r.iterations_run < 400
    best = min(range(1, len(errors)), key=errors.__getitem__)
    assert r.stopped_at == best and r.iterations_run == best + 1 + 4


def test_the_stretch_on_every_known_pixel_goes_on_from_the_chosen_estimate_and_gains(monkeypatch, astronaut_crop):
    """After the held-out stop, fitting every known pixel from the state of the returned estimate
    takes back part of what holding pixels out cost: measured against the ground truth, on a noisy
    image whose held-out error turns (so the chosen estimate is not the last one). The gain differs
    between seeds and machines (-0.16 to +0.71 dB over seeds 0 to 7 on one CPU, +0.00 for seed 0 there),
    so it is asserted on the mean over four seeds (+0.20 dB there)."""
    g = torch.Generator().manual_seed(5)
    mask = (torch.rand(1, 1, 64, 64, generator=g) > 0.5).float()
    y = (astronaut_crop + 0.1 * torch.randn(astronaut_crop.shape, generator=g)).clamp(0, 1) * mask
    runs = {}
    for most in (0, 200):
        _quick_held_out(monkeypatch, patience=30, min_iterations=1, max_stretch=most)
        # PyTorch's betas: with the preset's (0.8, 0.9) this small noisy fit overfits within the stretch
        # and the stretch loses 0.1 dB here (docs/stopping.md, "Inpainting with Adam's betas")
        runs[most] = [neuralprior.inpaint(y, mask, num_iter=600, device="cpu", seed=seed, lr=0.02, betas=(0.9, 0.999))
                      for seed in range(4)]
    gains = [psnr(f.image, astronaut_crop) - psnr(h.image, astronaut_crop) for h, f in zip(runs[0], runs[200])]
    assert sum(gains) / len(gains) > 0.05, gains
    first, finished = runs[0][0], runs[200][0]
    b = first.stopped_at
    assert "held-out" in first.reason and first.iterations_run == b + 31 and first.config["held_out"]["stretch"] == 0
    n = (b + 1) // 4                # a quarter of the iterations to the chosen estimate
    assert n > 0 and finished.config["held_out"] == dict(first.config["held_out"], stretch=n)
    assert finished.stopped_at == b + n and finished.iterations_run == first.iterations_run + n
    # the returned estimate's lineage: the held-out fit up to b, then the stretch (not the iterations after b)
    assert finished.history["loss"][:b + 1] == first.history["loss"][:b + 1]
    assert len(finished.history["loss"]) == b + 1 + n
    assert finished.best_state is None and first.best_state is None          # not kept on the results


def test_a_best_state_resumes_only_with_its_history(astronaut_crop):
    class BestAtThree(StoppingRule):
        def update(self, iteration, estimate):
            return Decision(best=iteration <= 3, stop=iteration == 7)

    cfg = FitConfig(num_iter=20, ema=0.9)
    r = fit(astronaut_crop, net=tiny_net(), config=cfg, stop=BestAtThree(), device="cpu", keep_best_state=True)
    assert r.stopped_at == 3 and r.iterations_run == 8 and r.best_state["iteration"] == 3
    with pytest.raises(NeuralPriorError, match="needs the history"):
        fit(astronaut_crop, net=tiny_net(), config=cfg, device="cpu", resume=r.best_state)
    kept = {k: v.clone() for k, v in r.best_state["net"].items()}
    state = dict(r.best_state, history={k: v[:4] for k, v in r.history.items()})
    for _ in range(2):      # from the state after iteration 3: the same steps as the run that kept it, twice
        more = fit(astronaut_crop, net=tiny_net(), config=replace(cfg, num_iter=8), stop="none", device="cpu",
                   resume=state)
        assert more.history["loss"] == r.history["loss"] and more.iterations_run == 8
    assert all(torch.equal(kept[k], v) for k, v in r.best_state["net"].items())    # the resumes left it as it was
    assert fit(astronaut_crop, net=tiny_net(), config=cfg, stop=4, device="cpu").best_state is None   # only if asked


def test_held_out_counts_pixel_positions_and_refuses_another_rules_state():
    from neuralprior.stopping import held_out_pixels

    mask = torch.zeros(1, 3, 8, 8)
    mask[..., :2, :] = 1
    assert held_out_pixels(mask) == 16 and held_out_pixels(mask[0, 0]) == 16
    rule = HeldOutError(torch.rand(1, 3, 8, 8), mask)
    assert rule.count == 16
    with pytest.raises(NeuralPriorError, match="another stopping rule"):
        rule.load_state_dict(WindowedVariance().state_dict())
    with pytest.raises(NeuralPriorError, match="another stopping rule"):
        WindowedVariance().load_state_dict(rule.state_dict())


def test_held_out_inpainting_resumes_to_the_same_result(monkeypatch, astronaut_crop, tmp_path):
    _quick_held_out(monkeypatch, patience=50, min_iterations=1)
    mask = (torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    y, ck = astronaut_crop * mask, tmp_path / "ck.pt"
    whole = neuralprior.inpaint(y, mask, num_iter=12, device="cpu", checkpoint=tmp_path / "whole.pt")
    neuralprior.inpaint(y, mask, num_iter=7, device="cpu", checkpoint=ck, checkpoint_every=7)
    resumed = neuralprior.inpaint(y, mask, num_iter=12, device="cpu", resume=ck)
    assert torch.equal(resumed.image, whole.image) and resumed.stopped_at == whole.stopped_at
    assert whole.config["held_out"]["stretch"] == 3
    # the checkpoint of the finished fit keeps the state of its best estimate: the stretch is redone from it
    again = neuralprior.inpaint(y, mask, num_iter=12, device="cpu", resume=tmp_path / "whole.pt")
    assert torch.equal(again.image, whole.image) and again.config["held_out"] == whole.config["held_out"]
    neuralprior.inpaint(y, mask, num_iter=12, device="cpu", stop="none", checkpoint=tmp_path / "n.pt")
    with pytest.raises(NeuralPriorError, match="another stopping rule"):      # that one fitted every known pixel
        neuralprior.inpaint(y, mask, num_iter=14, device="cpu", resume=tmp_path / "n.pt")


def test_min_decrease_ends_a_slow_edge_down_at_its_last_clear_minimum():
    """A std that falls fast to 0.01 by iteration 100, then edges down by 1% in 200 iterations: every step is a
    new minimum, so the patience never ends the run and the latest estimate is the one kept. With
    ``min_decrease`` 2% only minima 2% under the last counted one count: the run ends ``patience`` after the
    last of the fast fall. The settled stop still looks at every new low."""
    from neuralprior.stopping import REFERENCE_NOISE

    def std(t):
        return 0.02 - 0.0001 * t if t <= 100 else 0.01 * (1 - 0.00005 * (t - 100))

    def run(threshold=0.0, **kw):
        rule = WindowedVariance(window=5, patience=200, min_iterations=0, tolerance=threshold / REFERENCE_NOISE, **kw)
        rule.noise_level = REFERENCE_NOISE
        return first_judged_stop(rule, lambda t: std(t) ** 2, iterations=600)

    assert run() == (None, 599, "")
    stop, best, reason = run(min_decrease=0.02)
    assert 90 <= best <= 110 and stop == best + 200 and "not decreased" in reason
    assert std(stop) > 0.98 * std(best)                             # less than 2% down in the patience
    # a settled threshold of 0.00999, crossed at iteration 120 between counted minima: the stop is there
    assert run(0.00999, min_decrease=0.02)[:2] == (120, 120) == run(0.00999)[:2]
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="min_decrease"):
            WindowedVariance(min_decrease=bad)
    old = WindowedVariance(min_decrease=0.02)                       # a checkpoint saved before the option
    saved = WindowedVariance()
    saved.judge(150, 1e-4)
    old.load_state_dict({k: v for k, v in saved.state_dict().items() if k not in ("min_decrease", "lowest_value")})
    assert old.min_decrease == 0 and old.lowest_value == old.best_variance
