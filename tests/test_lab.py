"""examples/lab.py --quick: every step writes its figures, and the lab's lessons hold on the numbers."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]

FIGURES = ["a_network.png", "b_reconstruction.png", "b_image_vs_noise.png", "c_denoising.png", "d_inpainting.png",
           "e_learning_rate.png", "f_skips_and_depth.png", "f_outputs.png", "g_stopping.png", "g_images.png"]


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("examples_lab", REPO_ROOT / "examples" / "lab.py")
    lab = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = lab                          # its dataclasses look their module up there
    spec.loader.exec_module(lab)
    out = tmp_path_factory.mktemp("lab")
    with torch.random.fork_rng(devices=[]):               # the script seeds torch's global generator
        return out, lab.main(["--quick", "-o", str(out), "--device", "cpu"])


def test_every_step_writes_its_figures(lab_run):
    out, _ = lab_run
    for name in FIGURES:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 200, name
    for name in ("b_reconstruction.gif", "c_denoising.gif"):
        with Image.open(out / name) as im:
            assert im.n_frames > 10, name
    assert "parameters:" in (out / "a_architecture.md").read_text()
    assert (out / "results.json").is_file()


def test_reconstruction_improves_and_structure_is_fitted_before_noise(lab_run):
    _, r = lab_run
    psnr = list(r["b"]["psnr"].values())
    assert psnr[0] < psnr[1] < psnr[2] and psnr[2] > psnr[0] + 10
    loss = r["b"]["loss_after"]
    assert loss["image"] < loss["shuffled pixels"] < loss["U(0, 1) noise"]   # same pixel values, no structure: slower


def test_restorations_beat_their_inputs(lab_run):
    _, r = lab_run
    assert r["c"]["dip"] > r["c"]["noisy"] + 3
    assert r["d"]["dip"] > r["d"]["masked"] + 10


def test_learning_rate_and_skip_connections(lab_run):
    _, r = lab_run
    assert r["e"]["loss_after"]["lr 0.01"] < r["e"]["loss_after"]["lr 0.0001"] / 5
    assert r["f"]["2 skips"]["final"] > r["f"]["0 skips"]["final"]


def test_fitting_too_long_fits_the_noise_and_the_automatic_stop_comes_before(lab_run):
    g = lab_run[1]["g"]
    assert g["stop_fired_at"] is not None
    assert g["psnr_last"] < g["peak"] - 1                       # overfitting: PSNR falls after its peak
    assert g["psnr_at_stop"] > g["psnr_last"]


def test_the_lab_page_explains_every_figure():
    page = (REPO_ROOT / "docs" / "lab.md").read_text()
    for name in FIGURES + ["b_reconstruction.gif", "c_denoising.gif", "a_architecture.md"]:
        assert f"`{name}`" in page, name
