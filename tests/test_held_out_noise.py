"""Denoising's stop on held-out noisy pixels (stop="held-out"): what the fit sees, the stop, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import neuralprior
from neuralprior import NeuralPriorError, psnr
from neuralprior.cli import main
from neuralprior.stopping import HeldOutError, hold_out_noisy, make_stopping_rule
from neuralprior.tasks import hold_out_noisy_pixels


def noisy(clean: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``clean`` with Gaussian noise of std ``sigma``, clipped and stored in 8 bits, as a noisy photograph is."""
    g = torch.Generator().manual_seed(seed)
    return torch.round((clean + sigma * torch.randn(clean.shape, generator=g)).clamp(0, 1) * 255) / 255


def test_the_fit_sees_nothing_of_the_held_out_pixels_noise():
    y = noisy(torch.full((1, 3, 64, 64), 0.5), 0.1)
    fitted, held = hold_out_noisy(y, 0.1, 0.1, seed=3)
    assert held.shape == (1, 1, 64, 64) and 0.07 < float(held.mean()) < 0.13
    assert torch.equal(fitted * (1 - held), y * (1 - held))           # the other pixels as they are
    # whatever the held-out pixels hold, the fit sees the same observation
    changed = torch.where(held.bool(), y.flip(-1), y)
    assert not torch.equal(changed, y)
    assert torch.equal(hold_out_noisy(changed, 0.1, 0.1, seed=3)[0], fitted)
    assert not torch.equal(hold_out_noisy(y, 0.1, 0.1, seed=4)[1], held)     # the seed draws them


def test_the_refilled_pixels_are_as_noisy_as_the_others():
    clean = torch.full((1, 3, 128, 128), 0.5)
    y = noisy(clean, 0.1)
    fitted, held = hold_out_noisy(y, 0.2, 0.1, seed=0)
    at = held.expand_as(y).bool()
    assert abs(float((fitted - clean)[at].std()) / 0.1 - 1) < 0.06     # neighbours' mean: 0.1 / sqrt(8) alone
    assert abs(float((fitted - clean)[at].mean())) < 0.005
    assert torch.equal(torch.round(fitted * 255) / 255, fitted)        # an 8-bit image stays on its grid
    continuous = y + 0.3 / 255
    assert not torch.equal(torch.round(hold_out_noisy(continuous, 0.2, 0.1)[0] * 255) / 255,
                           hold_out_noisy(continuous, 0.2, 0.1)[0])


def test_too_small_an_image_keeps_the_rule_it_had():
    y = noisy(torch.full((1, 1, 16, 16), 0.5), 0.2)                  # 3% of 256 pixels: 8, under 64
    rule = make_stopping_rule("auto")
    assert hold_out_noisy_pixels(y, neuralprior.FitConfig(), dict(fraction=0.03), 0, rule) == (y, rule)
    r = neuralprior.denoise(y, stop="held-out", num_iter=3, device="cpu")
    assert "held_out" not in r.config and r.reason.endswith("too small to hold pixels out (fewer than 64): the "
                                                            "automatic stop")


def test_denoising_with_held_out_pixels_stops_near_its_best(astronaut_crop):
    """Strong noise on a 64x64 crop: the estimate at the minimum of the held-out error is within a dB of the
    best estimate of the run (by the ground truth) and far above the noisy image; the stop needs no level."""
    y = noisy(astronaut_crop, 50 / 255)
    r = neuralprior.denoise(y, stop="held-out", num_iter=400, device="cpu", x_true=astronaut_crop)
    got = psnr(r.image, astronaut_crop)
    assert got > psnr(y, astronaut_crop) + 6
    assert max(r.history["psnr"]) - got < 1.0
    info = r.config["held_out"]
    assert info["noisy"] and info["pixels"] == round(info["pixels"]) >= 64 and info["best_iteration"] == r.stopped_at
    assert r.iterations_run < 400 and "held-out pixels has not decreased for 200" in r.reason


def test_the_held_out_stop_is_for_denoising_only(astronaut_crop):
    mask = torch.ones(1, 1, 64, 64)
    with pytest.raises(NeuralPriorError, match="for denoising"):
        neuralprior.restore("inpaint", astronaut_crop, mask=mask, stop="held-out", device="cpu")
    with pytest.raises(NeuralPriorError, match="for denoising"):
        make_stopping_rule("held-out")


def test_cli_stop_held_out(tmp_path, capsys):
    rng = np.random.default_rng(0)
    image = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    report = tmp_path / "r.json"
    assert main(["denoise", str(image), "-o", str(tmp_path / "out.png"), "--report", str(report), "--stop",
                 "held-out", "--iterations", "5", "--device", "cpu", "--quiet"]) == 0
    r = json.loads(report.read_text())
    assert r["stop"] == "held-out" and r["config"]["held_out"]["noisy"] and r["iterations_run"] == 5
    capsys.readouterr()
    mask = tmp_path / "m.png"
    Image.fromarray(np.full((64, 64), 255, dtype=np.uint8)).save(mask)
    out = tmp_path / "in.png.inpainted.png"
    assert main(["inpaint", str(image), "--mask", str(mask), "-o", str(out), "--stop", "held-out",
                 "--device", "cpu", "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "for denoising" in err and not out.exists()


def test_a_held_out_denoising_fit_resumes_to_the_same_result(astronaut_crop, tmp_path):
    y = noisy(astronaut_crop, 50 / 255)
    whole = neuralprior.denoise(y, stop="held-out", num_iter=30, device="cpu")
    neuralprior.denoise(y, stop="held-out", num_iter=17, device="cpu", checkpoint=tmp_path / "ck.pt",
                        checkpoint_every=17)
    resumed = neuralprior.denoise(y, stop="held-out", num_iter=30, device="cpu", resume=tmp_path / "ck.pt")
    assert torch.equal(resumed.image, whole.image) and resumed.stopped_at == whole.stopped_at
    assert isinstance(hold_out_noisy_pixels(y, neuralprior.FitConfig(), dict(fraction=0.03), 0)[1], HeldOutError)
