"""Beyond the paper's four tasks: deblurring, compressed-sensing MRI, flash/no-flash,
noise models and regularisers, and a user-written operator.

The recovery tests use small images and a few hundred float32 iterations on the CPU; each
asserts a margin over the naive answer set well below the one measured (noted per test).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import neuralprior
from neuralprior import FitConfig, NeuralPriorError, psnr
from neuralprior.fit import squared_gradient, total_variation
from neuralprior.operators import (MRI, Blur, KSpaceMask, adjoint_test, box_kernel, cartesian_mask, gaussian_kernel,
                                   motion_kernel, parse_blur, radial_mask)
from neuralprior.presets import get_preset
from neuralprior.tasks import MRIResult


REPO_ROOT = Path(__file__).resolve().parents[1]
F32 = dict(precision="float32", channels_last=False, device="cpu", stop="none")


@pytest.fixture(scope="module")
def phantom64() -> torch.Tensor:
    from skimage import data
    from skimage.transform import resize

    p = resize(data.shepp_logan_phantom(), (64, 64), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(p).clamp(0, 1)[None, None]


# --- blur specs -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [("gaussian:2.0", gaussian_kernel(2.0)), ("box:5", box_kernel(5)),
                                            ("motion:9,30", motion_kernel(9, 30)), ("motion:7", motion_kernel(7)),
                                            (" Gaussian:1 ", gaussian_kernel(1.0))])
def test_parse_blur_named_kernels(spec, expected):
    k = parse_blur(spec)
    assert torch.allclose(k, expected)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_parse_blur_kernel_files_are_normalised(tmp_path):
    arr = np.zeros((5, 7))
    arr[2, 1:6] = 3.0
    np.save(tmp_path / "k.npy", arr)
    k = parse_blur(tmp_path / "k.npy")
    assert k.shape == (5, 7) and k.sum().item() == pytest.approx(1.0)
    assert torch.allclose(k[2, 1:6], torch.full((5,), 0.2))
    img = np.zeros((9, 9, 3), np.uint8)
    img[4, :, :] = 255
    Image.fromarray(img).save(tmp_path / "k.png")
    k = parse_blur(str(tmp_path / "k.png"))
    assert k.shape == (9, 9) and torch.allclose(k[4], torch.full((9,), 1 / 9))


@pytest.mark.parametrize("spec, match", [("gaussian:-1", "positive"), ("warp:3", "unknown blur kind"),
                                         ("missing.npy", "no such kernel file"), ("gaussian:", "give a finite"),
                                         ("gaussian:abc", "not a number"), ("box:2.5", "positive integer"),
                                         ("motion:9,30,1", "1 or 2"), ("motion:0.5", ">= 1"),
                                         ("gaussian:nan", "finite"), ("gaussian:1e9", "too large")])
def test_parse_blur_rejects_bad_specs_in_one_line(spec, match):
    with pytest.raises(NeuralPriorError, match=match) as e:
        parse_blur(spec)
    assert "\n" not in str(e.value)


def test_parse_blur_rejects_bad_kernel_files(tmp_path):
    np.save(tmp_path / "neg.npy", -np.ones((3, 3)))
    np.save(tmp_path / "3d.npy", np.ones((3, 3, 3)))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    for name, match in (("neg.npy", "non-negative"), ("3d.npy", "2-D"), ("junk.npy", "not a readable")):
        with pytest.raises(NeuralPriorError, match=match):
            parse_blur(tmp_path / name)


# --- MRI operator and masks --------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cartesian", "radial"])
@pytest.mark.parametrize("centered", [True, False])
@pytest.mark.parametrize("x_shape", [(1, 1, 32, 32), (2, 3, 24, 40), (1, 1, 33, 17)])
def test_mri_adjoint_is_exact(kind, centered, x_shape, rng):
    shape = x_shape[-2:]
    m = cartesian_mask(shape, 4, generator=rng) if kind == "cartesian" else radial_mask(shape, 4)
    assert adjoint_test(MRI(m, centered=centered), x_shape, generator=rng) < 1e-5


def test_blur_adjoint_for_parsed_kernels(rng):
    for spec in ("gaussian:2", "box:4", "motion:9,30"):
        assert adjoint_test(Blur(parse_blur(spec)), (1, 3, 30, 31), generator=rng) < 1e-5


def test_mri_shapes_and_full_sampling_is_unitary(rng):
    x = torch.rand(2, 3, 16, 20, generator=rng)
    op = MRI(torch.ones(16, 20))
    y = op(x)
    assert y.shape == (2, 6, 16, 20) and not y.is_complex()
    assert op.output_shape(tuple(x.shape)) == tuple(y.shape) and op.input_shape(tuple(y.shape)) == tuple(x.shape)
    assert torch.allclose(op.adjoint(y), x, atol=1e-5)                          # orthonormal FFT: F^T F = I
    assert torch.allclose((y ** 2).sum(), (x ** 2).sum(), rtol=1e-4)            # Parseval
    k = np.fft.fftshift(np.fft.fft2(x[0, 0].numpy(), norm="ortho"))
    assert np.allclose(y[0, 0].numpy(), k.real, atol=1e-5) and np.allclose(y[0, 3].numpy(), k.imag, atol=1e-5)
    assert KSpaceMask is MRI


def test_mri_masks_zero_unsampled_kspace(rng):
    m = cartesian_mask((16, 16), 4, generator=rng)
    y = MRI(m)(torch.rand(1, 1, 16, 16, generator=rng))
    assert torch.all(y[:, :, m == 0] == 0)


@pytest.mark.parametrize("shape", [(64, 64), (128, 128), (96, 64)])
@pytest.mark.parametrize("acceleration", [2, 4, 8])
def test_masks_sample_about_one_over_the_acceleration(shape, acceleration, rng):
    for m in (cartesian_mask(shape, acceleration, generator=rng), radial_mask(shape, acceleration)):
        assert m.shape == shape and set(m.unique().tolist()) <= {0.0, 1.0}
        assert abs(m.mean().item() * acceleration - 1) < 0.25


def test_cartesian_mask_full_lines_with_the_centre_kept(rng):
    m = cartesian_mask((64, 80), 4, center_fraction=0.1, generator=rng)
    assert torch.equal(m, m[:1].expand(64, 80))                                 # whole columns
    assert torch.all(m[:, 40 - 4:40 + 4] == 1)                                  # 8 centre lines around W // 2
    again = cartesian_mask((64, 80), 4, center_fraction=0.1, generator=torch.Generator().manual_seed(1234))
    assert torch.equal(m, again)                                                # the generator decides the rest


def test_radial_mask_spokes_pass_through_the_centre():
    m = radial_mask((64, 64), 6)
    assert m[32].all()                                                          # the horizontal spoke
    assert m[30:35, 30:35].mean() > 0.8 and m[:8, :8].mean() < 0.3            # dense centre, sparse corners


@pytest.mark.parametrize("bad", [0.5, 0, float("nan"), "x"])
def test_masks_reject_bad_accelerations(bad):
    with pytest.raises(NeuralPriorError, match="acceleration"):
        cartesian_mask((16, 16), bad)
    with pytest.raises(NeuralPriorError, match="acceleration"):
        radial_mask((16, 16), bad)


def test_mri_operator_rejects_bad_masks():
    with pytest.raises(NeuralPriorError, match="2-D"):
        MRI(torch.ones(1, 4, 4))
    with pytest.raises(NeuralPriorError, match="samples nothing"):
        MRI(torch.zeros(4, 4))


# --- the energy: data terms and regularisers ---------------------------------------------------

def test_squared_gradient_and_tv_of_a_ramp():
    ramp = torch.arange(5.0).repeat(4, 1)[None, None] * 0.1                     # 4 x 5, step 0.1 along x
    assert squared_gradient(ramp).item() == pytest.approx(0.01)
    assert total_variation(ramp).item() == pytest.approx(0.1)
    assert squared_gradient(torch.ones(1, 1, 4, 4)).item() == 0


def test_regularisers_make_the_fit_smoother(astronaut_crop):
    small = astronaut_crop[..., :32, :32]
    kw = dict(num_iter=40, stop="none", device="cpu", precision="float32", channels_last=False, reg_noise_std=0.0,
              ema=0.0)
    plain = neuralprior.reconstruct(small, **kw).image
    for field in ("tv_weight", "tikhonov_weight"):
        smooth = neuralprior.reconstruct(small, **{field: 1.0}, **kw).image
        assert squared_gradient(smooth) < 0.8 * squared_gradient(plain), field
    assert FitConfig().tikhonov_weight == 0 and FitConfig().tv_weight == 0


def test_poisson_loss_beats_the_noisy_counts(astronaut_crop):
    # measured (seed 0, float32): 17.2 dB noisy -> 24.8 dB after 150 iterations (27.2 dB after 300)
    peak = 30
    y = torch.poisson(peak * astronaut_crop, generator=torch.Generator().manual_seed(0)) / peak
    r = neuralprior.denoise(y, loss="poisson", num_iter=150, **F32)
    assert r.config["loss"] == "poisson"
    assert psnr(r.image, astronaut_crop) > psnr(y, astronaut_crop) + 3.0


def test_unknown_loss_is_rejected(astronaut_crop):
    with pytest.raises(NeuralPriorError, match="unknown loss 'l3'"):
        neuralprior.denoise(astronaut_crop, loss="l3", num_iter=1, device="cpu")


# --- deblurring --------------------------------------------------------------------------------

def test_deblurring_beats_the_blurred_input(astronaut_crop):
    # measured (seed 0, float32): 24.63 dB blurred -> 25.81 dB after 700 iterations (27.4 dB after 3000)
    y = Blur(parse_blur("gaussian:2"))(astronaut_crop)
    y = (y + 0.01 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    r = neuralprior.deblur(y, "gaussian:2", num_iter=700, **F32)
    assert r.image.shape == y.shape
    assert psnr(r.image, astronaut_crop) > psnr(y, astronaut_crop) + 0.5


def test_deblur_takes_a_kernel_array_and_needs_one(astronaut_crop):
    r = neuralprior.deblur(astronaut_crop[..., :20, :23], box_kernel(3), num_iter=2, **F32)
    assert r.image.shape == (1, 3, 20, 23)
    with pytest.raises(NeuralPriorError, match="needs the blur kernel"):
        neuralprior.restore("deblur", astronaut_crop, num_iter=1, device="cpu")


# --- compressed-sensing MRI --------------------------------------------------------------------

def test_mri_beats_zero_filling(phantom64):
    # measured (float32, seeds 0/1/2): zero-filled 18.4 dB -> 23.5/24.8/25.9 dB after 400 iterations;
    # the default preset with stop=auto: 27.3 dB (stopped at 2680)
    r = neuralprior.mri(phantom64[0, 0].numpy(), sampling="cartesian", acceleration=4, num_iter=400, **F32)
    assert isinstance(r, MRIResult)
    assert r.image.shape == (1, 1, 64, 64) and r.zero_filled.shape == (1, 1, 64, 64)
    assert abs(r.mask.mean().item() - 0.25) < 0.02 and r.scale == 1.0
    assert psnr(r.image, phantom64) > psnr(r.zero_filled, phantom64) + 3.0


def test_mri_from_measured_kspace(phantom64, rng):
    mask = radial_mask((64, 64), 4)
    kspace = np.fft.fftshift(np.fft.fft2(phantom64[0, 0].numpy().astype(np.float64), norm="ortho")) * 1e-3
    measured = kspace * mask.numpy()
    a = neuralprior.mri(measured, num_iter=3, **F32)                           # the mask: non-zero entries
    assert torch.equal(a.mask, mask)
    assert a.zero_filled.max().item() == pytest.approx(0.9, abs=1e-4)          # scaled so it peaks at 0.9
    assert a.scale == pytest.approx(np.abs(np.fft.ifft2(np.fft.ifftshift(measured), norm="ortho")).max() / 0.9)
    b = neuralprior.mri(torch.from_numpy(kspace), mask=mask, num_iter=3, **F32)
    assert torch.allclose(a.zero_filled, b.zero_filled, atol=1e-5)


def test_mri_rejects_bad_inputs(phantom64):
    img = phantom64[0, 0]
    with pytest.raises(NeuralPriorError, match="mask has shape"):
        neuralprior.mri(img, mask=torch.ones(8, 8), num_iter=1, device="cpu")
    with pytest.raises(NeuralPriorError, match="unknown sampling 'spiral'"):
        neuralprior.mri(img, sampling="spiral", num_iter=1, device="cpu")
    with pytest.raises(NeuralPriorError, match="2-D complex"):
        neuralprior.mri(np.ones((2, 8, 8), np.complex64), num_iter=1, device="cpu")
    with pytest.raises(TypeError, match="unknown option"):
        neuralprior.mri(img, iterations=3)
    with pytest.raises(NeuralPriorError, match="use neuralprior.mri"):
        neuralprior.restore("mri", phantom64)


# --- flash / no-flash --------------------------------------------------------------------------

def test_flash_no_flash_returns_the_no_flash_size(astronaut_crop):
    noflash = astronaut_crop[..., :40, :50] * 0.3                               # dark and not a multiple of 32
    flash = astronaut_crop[..., :40, :50].flip(1)                               # other colours, same size
    r = neuralprior.flash_no_flash(noflash, flash, num_iter=5, **F32)
    assert r.image.shape == noflash.shape
    gray = neuralprior.flash_no_flash(noflash, flash.mean(1, keepdim=True), num_iter=2, **F32)
    assert gray.image.shape == noflash.shape
    with pytest.raises(NeuralPriorError, match="same size"):
        neuralprior.flash_no_flash(noflash, astronaut_crop, num_iter=1, device="cpu")


def test_flash_presets():
    p = get_preset("flash", "paper")
    assert p.network_args["in_channels"] == 3
    assert p.network_args["upsample"] == ["nearest", "nearest", "bilinear", "bilinear", "bilinear"]
    assert (p.fit.lr, p.fit.num_iter, p.fit.reg_noise_std, p.fit.precision) == (0.1, 601, 0.0, "float32")
    net = p.build_network(out_channels=3)
    assert net.in_channels == 3
    assert get_preset("flash").build_network(out_channels=3).in_channels == 3


# --- a user-written operator -------------------------------------------------------------------

def test_colourisation_example_runs():
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "examples" / "colourisation.py"), "--iterations", "3",
                           "--size", "32"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "adjoint test of ChannelMean" in proc.stdout and "3 iterations" in proc.stdout
