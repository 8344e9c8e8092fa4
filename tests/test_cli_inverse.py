"""The command line for the inverse problems beyond the paper: deblur, mri, flash, --loss/--tv/--tikhonov."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neuralprior.cli import main

FAST = ["--iterations", "3", "--stop", "none", "--device", "cpu", "--quiet"]


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def photo(tmp_path) -> Path:
    from skimage import data

    path = tmp_path / "photo.png"
    Image.fromarray(data.astronaut()[100:124, 180:210]).save(path)             # 30 x 24 RGB
    return path


@pytest.mark.parametrize("blur", ["gaussian:2.0", "box:5", "motion:9,30"])
def test_deblur_end_to_end(photo, tmp_path, blur):
    out, rep = tmp_path / "sharp.png", tmp_path / "r.json"
    assert run("deblur", photo, "--blur", blur, "-o", out, "--report", rep, "--gt", photo, *FAST) == 0
    assert Image.open(out).size == (30, 24) and Image.open(out).mode == "RGB"
    r = json.loads(rep.read_text())
    assert r["task"] == "deblur" and r["iterations_run"] == 3


def test_deblur_with_a_kernel_file(photo, tmp_path):
    np.save(tmp_path / "k.npy", np.outer([1, 2, 1], [1, 2, 1]).astype(float))
    assert run("deblur", photo, "--blur", tmp_path / "k.npy", "-o", tmp_path / "o.png", *FAST) == 0
    assert run("deblur", photo, "--blur", photo, "-o", tmp_path / "o2.png", *FAST) == 0    # an image as kernel


@pytest.mark.parametrize("spec", ["gaussian:-1", "warp:3", "missing.npy", "motion:", "box:0"])
def test_bad_blur_spec_is_a_one_line_error(photo, tmp_path, capsys, spec):
    out = tmp_path / "o.png"
    assert run("deblur", photo, "--blur", spec, "-o", out, *FAST) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralprior: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_loss_and_regularisers_reach_the_fit(photo, tmp_path):
    rep = tmp_path / "r.json"
    assert run("denoise", photo, "-o", tmp_path / "o.png", "--loss", "l1", "--tv", "0.05", "--tikhonov", "0.2",
               "--report", rep, *FAST) == 0
    cfg = json.loads(rep.read_text())["config"]
    assert (cfg["loss"], cfg["tv_weight"], cfg["tikhonov_weight"]) == ("l1", 0.05, 0.2)
    assert run("deblur", photo, "--blur", "box:3", "-o", tmp_path / "p.png", "--loss", "poisson", *FAST) == 0


def test_no_cuda_graph_reaches_the_fit(photo, tmp_path, monkeypatch):
    import neuralprior.tasks as tasks

    asked = []
    real_fit = tasks.fit
    monkeypatch.setattr(tasks, "fit", lambda *a, **k: asked.append(k["config"].cuda_graph) or real_fit(*a, **k))
    assert run("denoise", photo, "-o", tmp_path / "o.png", *FAST) == 0
    assert run("denoise", photo, "-o", tmp_path / "p.png", "--no-cuda-graph", *FAST) == 0
    assert asked == [True, False]


@pytest.mark.parametrize("args", [["--loss", "huber"], ["--tv", "-1"], ["--tikhonov", "x"]])
def test_bad_energy_options_are_rejected(photo, tmp_path, capsys, args):
    assert run("denoise", photo, "-o", tmp_path / "o.png", *args, *FAST) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_mri_phantom_demo(tmp_path, capsys):
    out = tmp_path / "mri"
    assert run("mri", "--phantom", "--size", "32", "-o", out, "--iterations", "3", "--stop", "none",
               "--device", "cpu") == 0
    for name in ("truth.png", "zero-filled.png", "dip.png"):
        im = Image.open(out / name)
        assert im.size == (32, 32) and im.mode == "L"
    text = capsys.readouterr().out
    assert "PSNR zero-filled" in text and "DIP" in text


def test_mri_restarts_save_the_average(tmp_path, capsys):
    out = tmp_path / "mri"
    rep = tmp_path / "r.json"
    assert run("mri", "--phantom", "--size", "32", "-o", out, "--iterations", "3", "--stop", "none",
               "--device", "cpu", "--restarts", "2", "--report", rep) == 0
    assert "returned the average of 2 fits: average of 2 fits: fit 1:" in capsys.readouterr().out
    r = json.loads(rep.read_text())
    assert r["stopped_at"] == -1 and r["iterations_run"] == 6
    assert [f["seed"] for f in r["config"]["restarts"]["fits"]] == [0, 1]
    assert run("mri", "--phantom", "-o", tmp_path / "m2", "--restarts", "2", "--checkpoint", tmp_path / "ck.pt",
               *FAST) == 2
    err = capsys.readouterr().err
    assert "without restarts" in err and err.count("\n") == 1
    assert not (tmp_path / "ck.pt").exists() and not (tmp_path / "m2" / "dip.png").exists()


def test_mri_on_an_image_and_on_kspace(photo, tmp_path, capsys):
    rep = tmp_path / "r.json"
    assert run("mri", photo, "-o", tmp_path / "m.png", "--sampling", "radial", "--acceleration", "3",
               "--report", rep, *FAST) == 0
    r = json.loads(rep.read_text())
    assert r["task"] == "mri" and abs(r["sampled_fraction"] - 1 / 3) < 0.1
    assert "psnr" in r and "zero_filled_psnr" in r
    assert Image.open(tmp_path / "m.png").size == (30, 24)
    img = np.asarray(Image.open(photo).convert("L"), dtype=np.float64) / 255
    mask = np.zeros(img.shape)
    mask[:, ::2] = 1
    np.save(tmp_path / "k.npy", np.fft.fftshift(np.fft.fft2(img, norm="ortho")))
    np.save(tmp_path / "mask.npy", mask)
    assert run("mri", tmp_path / "k.npy", "--mask", tmp_path / "mask.npy", "-o", tmp_path / "k.png", *FAST) == 0
    assert Image.open(tmp_path / "k.png").size == (30, 24)
    np.save(tmp_path / "measured.npy", np.fft.fftshift(np.fft.fft2(img, norm="ortho")) * mask)
    assert run("mri", tmp_path / "measured.npy", "-o", tmp_path / "n.png", *FAST) == 0      # mask: non-zero entries


@pytest.mark.parametrize("args, match", [([], "needs an INPUT"), (["--phantom", "x.png"], "not both"),
                                         (["real.npy"], "complex 2-D"), (["x.png", "--sampling", "spiral"], "invalid choice"),
                                         (["x.png", "--acceleration", "0.5"], "acceleration")])
def test_mri_errors(photo, tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "real.npy", np.ones((8, 8)))
    Image.open(photo).save(tmp_path / "x.png")
    assert run("mri", *args, "-o", tmp_path / "o.png", *FAST) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_flash_no_flash_end_to_end(photo, tmp_path, capsys):
    dark = tmp_path / "noflash.png"
    Image.fromarray((np.asarray(Image.open(photo)) * 0.3).astype(np.uint8)).save(dark)
    out = tmp_path / "f.png"
    assert run("flash", dark, "--flash", photo, "-o", out, *FAST) == 0
    assert Image.open(out).size == (30, 24)
    other = tmp_path / "other.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(other)
    assert run("flash", dark, "--flash", other, "-o", tmp_path / "g.png", *FAST) == 2
    assert "same size" in capsys.readouterr().err
