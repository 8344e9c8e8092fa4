"""Device placement: CPU always; CUDA when present (the same tests run on a GPU machine)."""
import pytest
import torch

import neuralprior
from neuralprior.device import autocast_context, resolve_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_auto_resolves_to_cuda_only_when_present():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(neuralprior.NeuralPriorError, match="CUDA is not available"):
        resolve_device("cuda")


def test_unknown_device_and_precision_are_errors():
    with pytest.raises(neuralprior.NeuralPriorError, match="unknown device"):
        resolve_device("warp9")
    with pytest.raises(neuralprior.NeuralPriorError, match="unknown precision"):
        autocast_context(torch.device("cpu"), "int4")


@cuda
@pytest.mark.parametrize("precision", ["float32", "auto"])
def test_fit_on_cuda_returns_cpu_image_and_improves(precision):
    g = torch.Generator().manual_seed(0)
    clean = torch.linspace(0, 1, 64)[None, None, :, None].expand(1, 3, 64, 64).contiguous()
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    r = neuralprior.denoise(noisy, device="cuda", num_iter=200, stop="none", precision=precision, x_true=clean)
    assert r.device.startswith("cuda")
    assert r.image.device.type == "cpu" and r.image.dtype == torch.float32
    assert neuralprior.psnr(r.image, clean) > neuralprior.psnr(noisy, clean) + 3


@cuda
def test_cuda_same_seed_same_quality():
    """cuDNN kernels are not bit-reproducible, so CUDA runs agree in quality, not in every bit."""
    g = torch.Generator().manual_seed(1)
    clean = torch.linspace(0, 1, 48)[None, None, :, None].expand(1, 3, 48, 48).contiguous()
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    a = neuralprior.denoise(noisy, device="cuda", num_iter=100, stop="none", precision="float32", seed=3)
    b = neuralprior.denoise(noisy, device="cuda", num_iter=100, stop="none", precision="float32", seed=3)
    assert a.image.shape == noisy.shape
    assert abs(neuralprior.psnr(a.image, clean) - neuralprior.psnr(b.image, clean)) < 0.5
