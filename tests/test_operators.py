"""Measurement operators: shapes, kernels, mask semantics and exact adjoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralprior import NeuralPriorError
from neuralprior.operators import (Blur, Downsample, Identity, Mask, adjoint_test, box_kernel,
                                   gaussian_kernel, lanczos_kernel, motion_kernel)

# Centre row of the paper's 2-D Lanczos-2 kernel for x4 (outer product of the 1-D kernel, sum 1).
LANCZOS_X4_CENTRE_ROW = [-0.0003, -0.0023, -0.0049, -0.0036, 0.0059, 0.0236, 0.0439, 0.0575,
                         0.0575, 0.0439, 0.0236, 0.0059, -0.0036, -0.0049, -0.0023, -0.0003]


# --- Identity --------------------------------------------------------------------------------

def test_identity_returns_its_input(rng):
    x = torch.rand(2, 3, 5, 7, generator=rng)
    op = Identity()
    assert torch.equal(op(x), x)
    assert torch.equal(op.adjoint(x), x)
    assert op.output_shape((2, 3, 5, 7)) == (2, 3, 5, 7)
    assert op.input_shape((2, 3, 5, 7)) == (2, 3, 5, 7)


# --- Mask ------------------------------------------------------------------------------------

def test_mask_keeps_known_pixels_and_zeroes_missing_ones(rng):
    m = torch.tensor([[1.0, 0.0], [0.0, 1.0]])            # 1 = known, 0 = missing
    x = torch.rand(1, 3, 2, 2, generator=rng) + 0.1       # no zeros in x
    y = Mask(m)(x)
    assert torch.equal(y[..., 0, 0], x[..., 0, 0])
    assert torch.equal(y[..., 1, 1], x[..., 1, 1])
    assert torch.all(y[..., 0, 1] == 0) and torch.all(y[..., 1, 0] == 0)


def test_mask_values_are_thresholded_at_one_half():
    op = Mask(torch.tensor([[0.7, 0.3], [0.51, 0.49]]))
    assert torch.equal(op.mask, torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]]))
    assert op.known_fraction == pytest.approx(0.5)
    assert torch.equal(op(torch.full((1, 1, 2, 2), 2.0)), torch.tensor([[[[2.0, 0.0], [2.0, 0.0]]]]))


@pytest.mark.parametrize("shape", [(6, 5), (1, 6, 5), (1, 1, 6, 5)])
def test_single_channel_mask_broadcasts_over_batch_and_channels(shape, rng):
    m2 = (torch.rand(6, 5, generator=rng) > 0.5).float()
    x = torch.rand(2, 3, 6, 5, generator=rng)
    y = Mask(m2.reshape(shape))(x)
    assert y.shape == x.shape
    assert torch.equal(y, x * m2)


def test_per_channel_mask(rng):
    m = (torch.rand(3, 4, 4, generator=rng) > 0.5).float()
    x = torch.rand(1, 3, 4, 4, generator=rng)
    assert torch.equal(Mask(m)(x), x * m[None])


@pytest.mark.parametrize("shape", [(5,), (1, 1, 1, 4, 4)])
def test_mask_of_wrong_rank_raises(shape):
    with pytest.raises(NeuralPriorError, match="2-D to 4-D"):
        Mask(torch.ones(shape))


# --- Downsample ------------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [2, 3, 4, 8])
@pytest.mark.parametrize("kernel", ["lanczos2", "lanczos3", "box", "bicubic"])
def test_downsample_output_shape_is_floor_of_size_over_factor(factor, kernel, rng):
    x = torch.rand(1, 3, 67, 50, generator=rng)
    op = Downsample(factor, kernel=kernel)
    y = op(x)
    assert tuple(y.shape) == (1, 3, 67 // factor, 50 // factor)
    assert op.output_shape(tuple(x.shape)) == tuple(y.shape)
    assert op.input_shape(tuple(y.shape)) == (1, 3, (67 // factor) * factor, (50 // factor) * factor)


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
@pytest.mark.parametrize("kernel", ["lanczos2", "lanczos3", "box", "bicubic"])
def test_downsample_keeps_a_constant_image_constant(factor, kernel):
    x = torch.full((1, 3, 48, 40), 0.37)
    y = Downsample(factor, kernel=kernel)(x)
    torch.testing.assert_close(y, torch.full_like(y, 0.37), atol=1e-6, rtol=0)


def test_downsample_factor_one_is_identity(rng):
    x = torch.rand(1, 3, 9, 7, generator=rng)
    assert torch.equal(Downsample(1)(x), x)


@pytest.mark.parametrize("factor", [0, -1, 2.5, "x", None])
def test_downsample_rejects_bad_factors(factor):
    with pytest.raises(ValueError, match="factor"):
        Downsample(factor)


def test_downsample_accepts_integral_float_factor():
    assert Downsample(2.0).factor == 2


@pytest.mark.parametrize("factor", [2, 3, 4, 5])
def test_lanczos3_downsampling_is_what_pillow_lanczos_resize_does(factor):
    """Odd factors too: there the centre of a low-resolution pixel is a high-resolution pixel (a kernel with
    half-pixel taps, as for even factors, is half a pixel off: 6.6 grey levels rms from Pillow at x3)."""
    pytest.importorskip("skimage")
    from PIL import Image
    from skimage import data
    img = data.astronaut()[100:220, 150:270]                          # a real photo, 120x120
    lr = np.asarray(Image.fromarray(img).resize((120 // factor,) * 2, Image.LANCZOS)).astype(np.float32) / 255
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    rms = {k: float(((Downsample(factor, k)(x)[0].permute(1, 2, 0) - torch.from_numpy(lr)) ** 2).mean().sqrt()) * 255
           for k in ("lanczos3", "lanczos2")}
    assert rms["lanczos3"] < 1.25                      # grey levels, Pillow's 8-bit rounding included
    assert rms["lanczos2"] > 1.5 * rms["lanczos3"]     # the paper's kernel is another model


def test_super_resolution_task_takes_a_kernel_name():
    from neuralprior.tasks import _operator
    y = torch.rand(1, 3, 8, 8)
    assert _operator("super-resolve", y, None, 2).kernel_name == "lanczos2"          # the paper's, by default
    assert _operator("super-resolve", y, None, 2, "lanczos3").kernel_name == "lanczos3"
    with pytest.raises(NeuralPriorError, match="name of its downsampling kernel"):
        _operator("super-resolve", y, None, 2, torch.ones(3, 3))
    with pytest.raises(NeuralPriorError, match="unknown downsampling kernel"):
        _operator("super-resolve", y, None, 2, "gauss")


def test_downsample_rejects_unknown_kernel():
    with pytest.raises(ValueError, match="unknown downsampling kernel"):
        Downsample(2, kernel="nearest")


# --- kernels ---------------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("support", [2, 3])
def test_lanczos_kernel_sums_to_one_and_is_symmetric(factor, support):
    k = lanczos_kernel(factor, support)
    assert k.ndim == 1 and k.numel() == 2 * support * factor + factor % 2     # odd factors: a centre tap
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(k, k.flip(0))
    if factor % 2:
        assert int(k.argmax()) == k.numel() // 2 and float(k[0]) == pytest.approx(0, abs=1e-7)


def test_lanczos_x4_matches_the_paper_kernel():
    k = lanczos_kernel(4)
    k2d = torch.outer(k, k)
    k2d = k2d / k2d.sum()
    n = k2d.shape[0]
    # an even-length kernel has two centre rows; they are equal by symmetry
    torch.testing.assert_close(k2d[n // 2 - 1], k2d[n // 2])
    ref = torch.tensor(LANCZOS_X4_CENTRE_ROW)
    torch.testing.assert_close(k2d[n // 2], ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(k2d[n // 2 - 1], ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kernel", [gaussian_kernel(0.5), gaussian_kernel(1.5), gaussian_kernel(3.0, size=9),
                                    motion_kernel(7, 30), motion_kernel(1), motion_kernel(12.5, -70),
                                    box_kernel(1), box_kernel(3), box_kernel(4)],
                         ids=["g0.5", "g1.5", "g3-9", "m7-30", "m1", "m12.5", "b1", "b3", "b4"])
def test_blur_kernels_sum_to_one_and_are_non_negative(kernel):
    assert kernel.ndim == 2
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(kernel.min()) >= 0


def test_gaussian_kernel_size_and_symmetry():
    k = gaussian_kernel(1.5)
    assert k.shape == (11, 11)                         # 2 * ceil(3 sigma) + 1
    torch.testing.assert_close(k, k.T)
    torch.testing.assert_close(k, k.flip(0).flip(1))
    assert k.argmax() == 5 * 11 + 5                    # peak in the centre


def test_horizontal_motion_kernel_is_a_centred_line():
    k = motion_kernel(7, 0)
    assert k.shape == (7, 7)
    assert float(k[3].sum()) == pytest.approx(1.0, abs=1e-6)    # all weight on the centre row
    assert torch.all(k[3] > 0)


def test_box_kernel_is_uniform():
    torch.testing.assert_close(box_kernel(3), torch.full((3, 3), 1 / 9))


@pytest.mark.parametrize("bad", [lambda: gaussian_kernel(0), lambda: gaussian_kernel(-1.0),
                                 lambda: motion_kernel(0.5), lambda: box_kernel(0), lambda: box_kernel(2.5)])
def test_bad_kernel_parameters_raise(bad):
    with pytest.raises(ValueError):
        bad()


# --- Blur ------------------------------------------------------------------------------------

def test_blur_of_an_impulse_is_the_kernel():
    k = motion_kernel(7, 30)                            # asymmetric: catches a correlation/convolution mix-up
    x = torch.zeros(1, 1, 33, 33)
    x[..., 16, 16] = 1
    y = Blur(k)(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y[0, 0, 13:20, 13:20], k)
    assert float(y.sum()) == pytest.approx(1.0, abs=1e-6)


def test_blur_keeps_a_constant_image_constant_even_when_small():
    for size in (3, 20):                                # smaller than the kernel: replicated borders
        x = torch.full((1, 3, size, size), 0.6)
        torch.testing.assert_close(Blur(gaussian_kernel(1.5))(x), x)


def test_blur_normalises_its_kernel():
    op = Blur(torch.ones(3, 3))
    assert float(op.kernel.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("kernel", [torch.ones(3), torch.zeros(3, 3), -torch.ones(3, 3), torch.ones(0, 3)])
def test_blur_rejects_bad_kernels(kernel):
    with pytest.raises(ValueError):
        Blur(kernel)


# --- adjoints --------------------------------------------------------------------------------

@pytest.mark.parametrize("op, shape", [
    (Identity(), (1, 3, 16, 16)),
    (Mask(torch.tensor([[1.0, 0.0, 1.0, 1.0]]).repeat(16, 4)), (1, 3, 16, 16)),
    (Downsample(2), (1, 3, 32, 32)),
    (Downsample(3), (1, 3, 33, 30)),
    (Downsample(4), (1, 3, 32, 36)),
    (Downsample(2, kernel="box"), (1, 1, 16, 16)),
    (Downsample(3, kernel="lanczos3"), (1, 2, 27, 27)),
    (Blur(gaussian_kernel(1.5)), (1, 3, 32, 32)),
    (Blur(motion_kernel(7, 30)), (1, 3, 32, 29)),
    (Blur(box_kernel(3)), (1, 3, 32, 32)),
], ids=["identity", "mask", "down2", "down3", "down4", "down2-box", "down3-lanczos3",
        "gauss1.5", "motion7-30", "box3"])
def test_adjoint_is_exact(op, shape, rng):
    assert adjoint_test(op, shape, generator=rng) < 1e-6


def test_adjoint_test_detects_a_wrong_adjoint(rng):
    class WrongAdjoint(Blur):
        def adjoint(self, y):                          # the forward map is not self-adjoint for this kernel
            return self.forward(y)

    assert adjoint_test(WrongAdjoint(motion_kernel(7, 30)), (1, 1, 24, 24), generator=rng) > 1e-3


def test_adjoint_test_leaves_the_operator_in_float32(rng):
    op = Downsample(2)
    adjoint_test(op, (1, 1, 8, 8), generator=rng)
    assert op.k1.dtype == torch.float32
