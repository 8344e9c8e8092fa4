"""Metrics: PSNR agrees with scikit-image; SSIM of an image with itself is 1; the SR protocol's Y PSNR."""
from __future__ import annotations

import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from neuralprior import psnr, ssim
from neuralprior.metrics import psnr_y, rgb_to_y


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (1, 1, 9, 13), (2, 3, 8, 8)])
@pytest.mark.parametrize("noise", [0.01, 0.1, 0.3])
def test_psnr_matches_scikit_image(rng, shape, noise):
    ref = torch.rand(shape, generator=rng)
    x = (ref + noise * torch.randn(shape, generator=rng)).clamp(0, 1)
    expected = peak_signal_noise_ratio(ref.numpy(), x.numpy(), data_range=1)
    assert psnr(x, ref) == pytest.approx(expected, abs=1e-6)


def test_psnr_known_value():
    ref = torch.zeros(1, 1, 4, 4)
    assert psnr(torch.full_like(ref, 0.1), ref) == pytest.approx(20.0)        # mse 0.01
    assert psnr(ref, ref) == math.inf


def test_psnr_clips_the_estimate_to_the_data_range():
    ref = torch.ones(1, 1, 4, 4)
    assert psnr(torch.full_like(ref, 1.5), ref) == math.inf


def test_psnr_raises_on_a_shape_mismatch():
    with pytest.raises(ValueError, match="shapes"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError):
        psnr(torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))


def test_psnr_shave_ignores_the_border(rng):
    ref = torch.rand(1, 3, 20, 20, generator=rng)
    x = ref.clone()
    x[..., :2, :] = 1 - x[..., :2, :]                                   # corrupt a 2-pixel top border
    assert math.isfinite(psnr(x, ref))
    assert psnr(x, ref, shave=2) == math.inf
    assert psnr(x, ref, shave=1) < math.inf


def test_rgb_to_y_bt601():
    white, black = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert torch.allclose(rgb_to_y(white), torch.full((1, 1, 2, 2), 235 / 255))
    assert torch.allclose(rgb_to_y(black), torch.full((1, 1, 2, 2), 16 / 255))
    g = torch.zeros(1, 1, 2, 2) + 0.3
    assert rgb_to_y(g) is g                                             # gray stays gray


def test_psnr_y_with_shave(rng):
    ref = torch.rand(1, 3, 24, 24, generator=rng)
    x = (ref + 0.05 * torch.randn(ref.shape, generator=rng)).clamp(0, 1)
    y_ref, y_x = rgb_to_y(ref)[0, 0].numpy(), rgb_to_y(x)[0, 0].numpy()
    expected = peak_signal_noise_ratio(y_ref[4:-4, 4:-4], y_x[4:-4, 4:-4], data_range=1)
    assert psnr_y(x, ref) == pytest.approx(expected, abs=1e-5)          # shave=4 by default
    expected3 = peak_signal_noise_ratio(y_ref[3:-3, 3:-3], y_x[3:-3, 3:-3], data_range=1)
    assert psnr_y(x, ref, shave=3) == pytest.approx(expected3, abs=1e-5)
    border = ref.clone()
    border[..., :4, :] = 0
    border[..., :, -4:] = 1
    assert psnr_y(border, ref) == math.inf and psnr_y(border, ref, shave=0) < 30


def test_ssim_of_an_image_with_itself_is_one(rng, astronaut_crop):
    x = torch.rand(1, 3, 32, 32, generator=rng)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-9)
    assert ssim(astronaut_crop, astronaut_crop) == pytest.approx(1.0, abs=1e-9)
    assert ssim(x[0], x[0]) == pytest.approx(1.0, abs=1e-9)              # (C, H, W) too


def test_ssim_drops_with_noise_and_matches_scikit_image(rng, astronaut_crop):
    noisy = (astronaut_crop + 0.1 * torch.randn(astronaut_crop.shape, generator=rng)).clamp(0, 1)
    s = ssim(noisy, astronaut_crop)
    assert 0 < s < 0.9
    expected = structural_similarity(noisy[0].numpy(), astronaut_crop[0].numpy(), channel_axis=0, data_range=1.0,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert s == pytest.approx(expected, abs=1e-9)


def test_ssim_averages_over_the_batch(rng):
    a = torch.rand(2, 1, 16, 16, generator=rng)
    b = a.clone()
    b[1] = torch.rand(1, 16, 16, generator=rng)
    assert ssim(b, a) == pytest.approx((1 + ssim(b[1:], a[1:])) / 2)
