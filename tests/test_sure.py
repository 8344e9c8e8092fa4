"""Denoising from the noisy image itself with Stein's unbiased risk estimate (SURE) as the loss."""
from __future__ import annotations

import pytest
import torch

from neuralprior import FitConfig, NeuralPriorError, fit, psnr
from neuralprior.metrics import estimate_noise_sigma
from neuralprior.networks import SkipNet
from neuralprior.operators import Mask
from neuralprior.stopping import WindowedVariance

SIGMA = 25 / 255


def net3(seed: int = 0) -> SkipNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SkipNet(in_channels=3, out_channels=3, channels_down=[16, 32, 64], channels_up=[16, 32, 64],
                       channels_skip=4)


def noisy_version(x: torch.Tensor, sigma: float = SIGMA, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x + sigma * torch.randn(x.shape, generator=g)          # not clipped: the noise model SURE assumes


def sure_config(**kw) -> FitConfig:
    return FitConfig(**{**dict(num_iter=150, lr=0.01, input_kind="observation", loss="sure", reg_noise_std=0.0,
                               sure_epsilon=0.05, ema=0.99), **kw})


def test_noise_level_estimate(astronaut_crop):
    for sigma in (10 / 255, 25 / 255, 50 / 255):
        est = estimate_noise_sigma(noisy_version(astronaut_crop, sigma))
        assert abs(est - sigma) < 0.25 * sigma, (est, sigma)


def clipped_noisy(clean: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.round((clean + sigma * torch.randn(clean.shape, generator=g)).clamp(0, 1) * 255) / 255


def dark_crop() -> torch.Tensor:
    """The coffee photograph's dark cup and white rim, 256x256: much clipping under strong noise."""
    from skimage import data

    coffee = torch.from_numpy(data.coffee()).permute(2, 0, 1)[None].float() / 255
    return coffee[..., 72:328, 172:428]


def test_noise_level_of_clipped_noise_is_its_rms():
    """On clipped 8-bit noise the estimate is the noise's root mean square, which the median rule underestimates
    (dark and bright regions clip it); without clipped pixels the two rules agree."""
    crop = dark_crop()                                            # the dark cup and the white rim: much clipping
    for sigma in (25 / 255, 50 / 255, 75 / 255):
        noisy = clipped_noisy(crop, sigma)
        rms = float((noisy - crop).pow(2).mean().sqrt())
        median_rule, calibrated = estimate_noise_sigma(noisy, clipped=False), estimate_noise_sigma(noisy)
        assert median_rule < 0.97 * rms                          # the median rule: 4-9% low here
        assert abs(calibrated - rms) < 0.6 * abs(median_rule - rms), (calibrated, median_rule, rms)
    mid = 0.3 + 0.4 * crop                                        # the same image in [0.3, 0.7]: nothing clipped
    noisy = clipped_noisy(mid, 10 / 255)
    assert not ((noisy == 0) | (noisy == 1)).any()
    assert estimate_noise_sigma(noisy) == estimate_noise_sigma(noisy, clipped=False)
    unclipped = mid + 10 / 255 * torch.randn(mid.shape, generator=torch.Generator().manual_seed(2))
    assert estimate_noise_sigma(unclipped - 0.5) == estimate_noise_sigma(unclipped - 0.5, clipped=False)  # not in [0, 1]
    clean = estimate_noise_sigma(crop)                            # a clean image: a fraction of a grey level either way
    assert clean < 2.5 / 255 and abs(clean - estimate_noise_sigma(crop, clipped=False)) < 0.2 / 255


def test_lightly_clipped_strong_noise_is_not_estimated_under_the_median_rule():
    """Where little is clipped the calibration can come out a few per cent under the noise's rms (too low a
    level lets SURE's fit reproduce noise); the estimate is then the median rule's, never under it: within
    1.5% of the rms on two greyscale photographs at sigma 50 and 75 (the calibration alone: 1.1 to 3.0% low)."""
    from skimage import data

    for name in ("clock", "cell"):
        photo = torch.from_numpy(getattr(data, name)()).float()[None, None] / 255
        h, w = photo.shape[-2:]
        crop = photo[..., (h - 256) // 2:(h - 256) // 2 + 256, (w - 256) // 2:(w - 256) // 2 + 256]
        for sigma in (50 / 255, 75 / 255):
            noisy = clipped_noisy(crop, sigma)
            rms = float((noisy - crop).pow(2).mean().sqrt())
            estimate = estimate_noise_sigma(noisy)
            assert estimate >= estimate_noise_sigma(noisy, clipped=False)
            assert abs(estimate - rms) < 0.015 * rms, (name, sigma * 255, estimate * 255, rms * 255)


def test_a_given_noise_level_is_its_rms_after_clipping():
    """A level given as the Gaussian std before 8-bit clipping (noise_sigma) becomes the clipped noise's root
    mean square, the level the estimate gives: well below the std on an image with dark and bright regions,
    the std itself where nothing is clipped."""
    from neuralprior.fit import noise_level
    from neuralprior.metrics import clipped_noise_rms

    crop = dark_crop()
    for sigma in (25 / 255, 50 / 255, 75 / 255):
        noisy = clipped_noisy(crop, sigma)
        rms = float((noisy - crop).pow(2).mean().sqrt())
        assert rms < 0.95 * sigma                                 # the clipped noise is much weaker here
        given = noise_level(noisy, FitConfig(loss="sure", noise_sigma=sigma))
        assert given == clipped_noise_rms(noisy, sigma) and abs(given - rms) < 0.03 * rms, (given, rms, sigma)
    noisy = clipped_noisy(0.3 + 0.4 * crop, 10 / 255)             # nothing clipped
    assert noise_level(noisy, FitConfig(loss="sure", noise_sigma=10 / 255)) == 10 / 255


def test_noise_level_estimate_is_scikit_images(astronaut_crop):
    """The direct PyWavelets computation gives scikit-image's estimate_sigma exactly (colour and grey)."""
    from skimage.restoration import estimate_sigma

    g = torch.Generator().manual_seed(3)
    grey = (torch.rand(1, 1, 45, 61, generator=g) * 0.3 + 0.2).clamp(0, 1)
    grey[..., :20, :30] = 0.5                                   # a flat region: zero coefficients left out
    for img in (noisy_version(astronaut_crop), astronaut_crop, grey):
        hwc = img[0].permute(1, 2, 0).double().numpy()
        assert estimate_noise_sigma(img, clipped=False) == pytest.approx(
            float(estimate_sigma(hwc, channel_axis=-1, average_sigmas=True)), rel=1e-12)
    assert estimate_noise_sigma(torch.zeros(1, 3, 32, 32)) == 0.0         # all coefficients zero: 0, not NaN
    assert estimate_noise_sigma(torch.ones(1, 3, 32, 32)) == 0.0           # (also where every pixel is clipped)
    assert estimate_noise_sigma(torch.full((1, 3, 32, 32), 0.5)) < 1e-12


@pytest.mark.parametrize("batched", [False, True])
def test_sure_tracks_the_true_error_and_denoises(astronaut_crop, batched):
    y = noisy_version(astronaut_crop)
    r = fit(y, net=net3(), config=sure_config(noise_sigma=SIGMA, sure_batched=batched), x_true=astronaut_crop,
            device="cpu")
    # SURE (the loss) estimates the mean squared error of the raw output to the clean image, never seen:
    # over the last 50 iterations its mean is within 30% of the measured one
    true_mse = [10 ** (-p / 10) for p in r.history["psnr_raw"][-50:]]
    sure = r.history["loss"][-50:]
    ratio = (sum(sure) / 50) / (sum(true_mse) / 50)
    assert 0.7 < ratio < 1.3, f"SURE / true MSE = {ratio:.2f}"
    gain = psnr(r.image, astronaut_crop) - psnr(y.clamp(0, 1), astronaut_crop)
    assert gain > 5.0, f"SURE denoising gained only {gain:.2f} dB"
    assert r.config["noise_sigma"] == pytest.approx(SIGMA)


def test_sure_prevents_the_overfitting_of_plain_mse(astronaut_crop):
    """From the noisy image as input, plain MSE reproduces the noise; SURE's divergence term stops that."""
    y = noisy_version(astronaut_crop)
    cfg = dict(num_iter=400, lr=0.01, ema=0.0)
    mse = fit(y, net=net3(), config=sure_config(loss="mse", **cfg), x_true=astronaut_crop, device="cpu")
    sure = fit(y, net=net3(), config=sure_config(noise_sigma=SIGMA, **cfg), x_true=astronaut_crop, device="cpu")
    end_mse, end_sure = mse.history["psnr"][-1], sure.history["psnr"][-1]
    assert end_sure > end_mse + 2.0, f"after 400 iterations: SURE {end_sure:.2f} dB, MSE {end_mse:.2f} dB"


def test_batched_sure_pair_is_the_two_passes_without_batch_statistics(astronaut_crop):
    """One pass on the batch (y, y + eps b) computes the same loss and step as two passes when nothing in
    the network couples the batch (no BatchNorm); with BatchNorm the pair shares its statistics."""
    y = noisy_version(astronaut_crop)
    runs = []
    for batched in (False, True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = SkipNet(in_channels=3, out_channels=3, channels_down=[8, 16], channels_up=[8, 16],
                          channels_skip=2, norm="none")
        cfg = sure_config(num_iter=3, noise_sigma=SIGMA, sure_batched=batched, reg_noise_std=0.05)
        runs.append(fit(y, net=net, config=cfg, seed=3, device="cpu"))
    two, one = runs
    assert one.history["loss"] == pytest.approx(two.history["loss"], rel=1e-4, abs=1e-7)
    assert torch.allclose(one.image, two.image, atol=1e-5)


def test_sure_estimates_the_noise_level_when_not_given(astronaut_crop):
    y = noisy_version(astronaut_crop)
    r = fit(y, net=net3(), config=sure_config(num_iter=3), device="cpu")
    assert r.config["noise_sigma"] == pytest.approx(SIGMA, rel=0.25)


@pytest.mark.parametrize("cfg, operator, match", [
    (dict(input_kind="noise"), None, "needs the observation as network input"),
    (dict(), Mask(torch.ones(1, 1, 64, 64)), "for denoising"),
    (dict(noise_sigma=0.0), None, "positive noise level"),
])
def test_sure_misuse_raises(astronaut_crop, cfg, operator, match):
    net = net3() if cfg.get("input_kind") != "noise" else SkipNet(in_channels=3, channels_down=[8, 8],
                                                                    channels_up=[8, 8], channels_skip=2)
    with pytest.raises(NeuralPriorError, match=match):
        fit(astronaut_crop, operator, net=net, config=sure_config(num_iter=2, **cfg), device="cpu")


def test_observation_input_needs_matching_channels(astronaut_crop):
    net = SkipNet(in_channels=8, channels_down=[8, 8], channels_up=[8, 8], channels_skip=2)
    with pytest.raises(NeuralPriorError, match="input channels"):
        fit(astronaut_crop, net=net, config=FitConfig(num_iter=2, input_kind="observation"), device="cpu")


def test_a_noise_free_image_gets_a_floor_noise_level():
    flat = torch.full((1, 3, 32, 32), 0.5)
    r = fit(flat, net=net3(), config=sure_config(num_iter=3), device="cpu")
    assert r.config["noise_sigma"] == pytest.approx(0.5 / 255)


def test_unclip_inverts_the_mean_of_clipped_noise():
    """Clipping biases noise near black and white; unclip maps the mean of clipped noisy copies back to the
    clean value (checked on Monte-Carlo means), and values beyond the reachable means to 0 or 1."""
    from neuralprior.metrics import unclip

    g = torch.Generator().manual_seed(0)
    clean = torch.tensor([0.0, 0.02, 0.1, 0.5, 0.9, 0.98, 1.0])
    for sigma in (10 / 255, 50 / 255):
        mean = (clean + sigma * torch.randn(400_000, clean.numel(), generator=g)).clamp(0, 1).mean(0)
        assert mean[0] - clean[0] > 0.35 * sigma and clean[-1] - mean[-1] > 0.35 * sigma     # the bias: 0.4 sigma
        assert torch.allclose(unclip(mean, sigma), clean, atol=0.004), unclip(mean, sigma)
    assert torch.equal(unclip(torch.tensor([-0.1, 0.0, 1.0, 1.2]), 50 / 255), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    x = torch.rand(2, 3, 8, 8, generator=g)
    assert torch.equal(unclip(x, 0.0), x)
    assert unclip(x.double(), 0.1).dtype == torch.float64 and unclip(x, 0.1).shape == x.shape
    assert unclip(torch.tensor([float("nan"), 0.5]), 0.1).isnan().tolist() == [True, False]     # NaN stays NaN


def test_the_std_before_clipping_is_estimated():
    """estimate_noise_sigma(before_clipping=True): the Gaussian std itself, within 12% on the dark crop at
    sigma = 25 to 75 (the clipped noise's rms, the default, is 8 to 18% lower there); the same number where
    nothing is clipped."""
    crop = dark_crop()
    for sigma in (25 / 255, 50 / 255, 75 / 255):
        noisy = clipped_noisy(crop, sigma)
        rms, before = estimate_noise_sigma(noisy), estimate_noise_sigma(noisy, before_clipping=True)
        assert rms < 0.95 * before and abs(before - sigma) < 0.12 * sigma, (rms, before, sigma)
    noisy = clipped_noisy(0.3 + 0.4 * crop, 10 / 255)
    assert estimate_noise_sigma(noisy, before_clipping=True) == estimate_noise_sigma(noisy)


def test_sure_on_clipped_noise_returns_the_estimate_unclipped():
    """On clipped strong noise the output average carries clipping's bias (dark pixels too bright); the fit
    returns it unclipped, with the std before clipping (estimated), and gains over the average itself; the
    callbacks see both, the stopping rule watches the average. The training is the same either way."""
    from neuralprior.metrics import unclip

    clean = torch.nn.functional.avg_pool2d(dark_crop(), 4)            # 64x64
    y = clipped_noisy(clean, 50 / 255)
    seen = {}
    on = fit(y, net=net3(), config=sure_config(), x_true=clean, device="cpu",
             callback=lambda s: seen.update(estimate=s.estimate.clone(), average=s.average.clone()))
    off = fit(y, net=net3(), config=sure_config(unclip=False), x_true=clean, device="cpu")
    level = on.config["unclip_sigma"]
    assert 0.8 * 50 / 255 < level < 1.05 * 50 / 255 and off.config["unclip_sigma"] is None
    gain = psnr(on.image, clean) - psnr(off.image, clean)
    assert gain > 0.4, f"unclipping gained {gain:.2f} dB"                 # measured: 0.79 dB
    assert torch.equal(seen["estimate"], unclip(seen["average"], level))
    assert torch.equal(off.image, seen["average"].clamp(0, 1))         # the same fit, its average not unclipped
    assert on.history["psnr"][-1] == pytest.approx(psnr(on.image, clean), abs=1e-4)


def test_nothing_is_unclipped_without_clipped_pixels(astronaut_crop):
    y = noisy_version(astronaut_crop)                                   # Gaussian, not clipped
    seen = []
    r = fit(y, net=net3(), config=sure_config(num_iter=3), device="cpu",
            callback=lambda s: seen.append(s.average is s.estimate))
    assert r.config["unclip_sigma"] is None and all(seen)
    clean = astronaut_crop.clamp(0.1, 0.9)
    y = clipped_noisy(clean, 25 / 255)
    assert ((y == 0) | (y == 1)).any()
    given = fit(y, net=net3(), config=sure_config(num_iter=3, noise_sigma=25 / 255), device="cpu")
    assert given.config["unclip_sigma"] == 25 / 255                      # a given level is the std before clipping


def test_a_checkpoint_resumes_with_unclipping_switched(tmp_path):
    """Unclipping changes what the average is shown as, not the fit: a checkpoint made with it resumes without
    it, and the resumed run's average is the uninterrupted run's."""
    clean = torch.nn.functional.avg_pool2d(dark_crop(), 8)            # 32x32
    y = clipped_noisy(clean, 50 / 255)
    whole = fit(y, net=net3(), config=sure_config(num_iter=6, unclip=False), device="cpu")
    fit(y, net=net3(), config=sure_config(num_iter=3), device="cpu", checkpoint=tmp_path / "c.pt")
    resumed = fit(y, net=net3(), config=sure_config(num_iter=6, unclip=False), device="cpu",
                  resume=tmp_path / "c.pt")
    assert resumed.config["unclip_sigma"] is None and torch.equal(resumed.image, whole.image)


class _Recording(WindowedVariance):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen: list[float] = []

    def observe_loss(self, value: float) -> None:
        self.seen.append(value)
        super().observe_loss(value)


def test_the_sure_value_reaches_the_rule_and_its_floor_ends_the_run(astronaut_crop):
    """fit() reports every accepted SURE value to the rule (and no other loss); with loss_floor, a SURE
    gone below 0 before min_iterations ends the run there. A level given twice too high moves SURE down by
    about 3 sigma^2, as a fit reproducing noise does."""
    y = noisy_version(astronaut_crop)
    rule = _Recording(window=10, min_iterations=100, loss_floor=True)
    r = fit(y, net=net3(), config=sure_config(noise_sigma=2 * SIGMA), stop=rule, device="cpu")
    assert r.iterations_run < 100 and "SURE" in r.reason, (r.iterations_run, r.reason)
    assert rule.seen == r.history["loss"] and sum(rule.losses) < 0
    assert r.stopped_at == r.iterations_run - 1                  # the latest estimate
    right = fit(y, net=net3(), config=sure_config(noise_sigma=SIGMA, num_iter=r.iterations_run + 10),
                stop=WindowedVariance(window=10, min_iterations=100, loss_floor=True), device="cpu")
    assert right.iterations_run == r.iterations_run + 10         # the right level: SURE stays above 0 longer
    mse = _Recording(window=10, loss_floor=True)
    fit(y, net=net3(), config=sure_config(loss="mse", num_iter=5), stop=mse, device="cpu")
    assert mse.seen == []                                        # not an estimate of the error: not reported


def test_the_rule_observes_sure_without_the_regulariser(astronaut_crop):
    """observe_loss gets SURE's own value, the estimate of the output's error, not the loss with a regulariser
    added: with a total-variation weight every observed value is below the fitted loss."""
    y = noisy_version(astronaut_crop)
    for tv in (0.0, 0.05):
        rule = _Recording(window=10)
        r = fit(y, net=net3(), config=sure_config(num_iter=5, noise_sigma=SIGMA, tv_weight=tv), stop=rule, device="cpu")
        diffs = [loss - seen for loss, seen in zip(r.history["loss"], rule.seen)]
        assert len(diffs) == 5 and (all(d > 0 for d in diffs) if tv else all(d == 0 for d in diffs)), diffs
