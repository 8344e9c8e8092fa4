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


def _noisy_ramp(size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    clean = torch.linspace(0, 1, size)[None, None, :, None].expand(1, 3, size, size).contiguous()
    return clean, (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)


def test_cuda_graph_setting_changes_nothing_on_the_cpu():
    clean, noisy = _noisy_ramp(32, 2)
    a = neuralprior.denoise(noisy, device="cpu", num_iter=15, stop="none", cuda_graph=True)
    b = neuralprior.denoise(noisy, device="cpu", num_iter=15, stop="none", cuda_graph=False, sure_batched=False)
    assert not a.config["cuda_graph"] and not b.config["cuda_graph"]       # the report says what was used
    assert not a.config["sure_batched"]                                     # "auto": two passes off CUDA
    assert torch.equal(a.image, b.image)


def test_a_failed_graph_recording_warns_and_leaves_plain_passes(monkeypatch):
    """Recording that fails (here: no CUDA stream to record on) warns once and hands back nothing to replay."""
    from neuralprior.fit import _record_cuda_graph

    def no_stream():
        raise RuntimeError("no stream here\nsecond line")

    monkeypatch.setattr(torch.cuda, "Stream", no_stream)
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w])
    w.grad = torch.ones(3)
    with pytest.warns(RuntimeWarning, match=r"CUDA graph recording failed, fitting without it: no stream here$"):
        graph, io = _record_cuda_graph(lambda *draws: None, (None, None), opt)
    assert graph is None and io is None and w.grad is None


def test_sure_batched_must_be_true_false_or_auto():
    with pytest.raises(neuralprior.NeuralPriorError, match="sure_batched must be"):
        neuralprior.denoise(torch.rand(1, 3, 32, 32), device="cpu", num_iter=1, sure_batched="yes")


@cuda
@pytest.mark.parametrize("precision", ["float32", "auto"])
def test_cuda_graph_is_recorded_and_fits_as_well_as_plain_passes(precision):
    """The default denoising (SURE, two passes) replayed from a CUDA graph: no fallback warning, same quality."""
    import warnings

    clean, noisy = _noisy_ramp(64, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)      # a failed recording warns: make it fail the test
        g = neuralprior.denoise(noisy, device="cuda", num_iter=150, stop="none", precision=precision, seed=5)
    p = neuralprior.denoise(noisy, device="cuda", num_iter=150, stop="none", precision=precision, seed=5,
                            cuda_graph=False)
    assert g.config["cuda_graph"] and not p.config["cuda_graph"]
    assert g.config["sure_batched"]                                         # "auto": one batch on CUDA
    assert neuralprior.psnr(g.image, clean) > neuralprior.psnr(noisy, clean) + 3
    assert abs(neuralprior.psnr(g.image, clean) - neuralprior.psnr(p.image, clean)) < 0.5


@cuda
def test_cuda_graph_records_every_task_operator():
    """Inpainting, super-resolution, deblurring and MRI operators replay inside the graph (no fallback)."""
    import warnings

    clean, _ = _noisy_ramp(64, 6)
    mask = (torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        runs = [neuralprior.inpaint(clean, mask, device="cuda", num_iter=20, stop="none"),
                neuralprior.super_resolve(clean[..., ::4, ::4], 4, device="cuda", num_iter=20, stop="none"),
                neuralprior.deblur(clean, "gaussian:1.5", device="cuda", num_iter=20, stop="none"),
                neuralprior.mri(clean[0, 0].numpy(), device="cuda", num_iter=20, stop="none")]
    for r in runs:
        assert r.config["cuda_graph"] and torch.isfinite(r.image).all()


@cuda
def test_cuda_graph_survives_the_divergence_guard():
    """A guard that fires at every step restores the weights in place; the replays go on with them."""
    clean, noisy = _noisy_ramp(48, 8)
    r = neuralprior.denoise(noisy, device="cuda", num_iter=40, stop="none", guard_jump=1e-9, seed=1)
    assert r.iterations_run == 40 and torch.isfinite(r.image).all()


@cuda
def test_inpainting_with_a_mask_on_the_gpu_holds_pixels_out_there():
    from neuralprior.stopping import split_mask

    mask = (torch.rand(1, 1, 64, 64) > 0.5).float().cuda()
    fitted, held = split_mask(mask, 0.05, seed=0)
    assert fitted.device.type == "cuda" and torch.equal((fitted + held).cpu(), mask.cpu())
    image = torch.rand(1, 3, 64, 64).cuda() * mask
    r = neuralprior.inpaint(image, mask, num_iter=8, device="cuda")
    assert r.image.shape == (1, 3, 64, 64) and r.config["held_out"]["pixels"] == int(held.sum())
    # then the stretch on every known pixel, resumed from the state kept on the GPU: 2 = a quarter of 8
    assert r.config["held_out"]["stretch"] == 2 and r.iterations_run == 10 and r.device.startswith("cuda")
