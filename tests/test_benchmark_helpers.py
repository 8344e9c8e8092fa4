"""Helpers of the benchmark scripts (benchmarks/levers.py): the held-out draws, the inpainting fill,
the perturbation schedules and the per-iteration series that the docs' lever tables are made of."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
levers = pytest.importorskip("levers")

from neuralprior import FitConfig  # noqa: E402
from neuralprior.networks import SkipNet  # noqa: E402


def holes_mask(size: int = 64) -> torch.Tensor:
    """A (1, 1, size, size) mask with three rectangular holes (0) in known pixels (1)."""
    m = torch.ones(1, 1, size, size)
    m[..., 5:15, 5:25] = 0
    m[..., 30:40, 40:44] = 0
    m[..., 50:60, 10:30] = 0
    return m


def check_split(mask, fitted, held):
    """The two masks partition the known pixels of ``mask``: disjoint, both 0/1, their sum ``mask``."""
    assert set(fitted.unique().tolist()) <= {0.0, 1.0} and set(held.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(fitted + held, mask)
    assert float((fitted * held).sum()) == 0


def test_split_takes_held_pixels_out_of_the_mask():
    mask = holes_mask(16)
    held = np.zeros((16, 16), dtype=bool)
    held[0, :4] = True
    held[15, 15] = True
    fitted, h = levers._split(mask, held)
    check_split(mask, fitted, h)
    assert h.shape == mask.shape and float(h.sum()) == 5


def test_far_from_missing_holds_out_the_fraction_away_from_the_holes():
    mask = holes_mask()
    fitted, held = levers.far_from_missing(mask, 0.05, seed=3)
    check_split(mask, fitted, held)
    known = mask[0, 0].numpy() > 0.5
    assert float(held.sum()) == round(0.05 * known.sum())
    distance = ndimage.distance_transform_edt(known)
    assert distance[held[0, 0].numpy() > 0.5].min() >= 3
    # the same seed draws the same pixels; another seed others
    assert torch.equal(levers.far_from_missing(mask, 0.05, seed=3)[1], held)
    assert not torch.equal(levers.far_from_missing(mask, 0.05, seed=4)[1], held)


def test_far_from_missing_refuses_when_too_few_pixels_are_far():
    mask = torch.ones(1, 1, 64, 64)
    mask[..., ::4, :] = 0                       # every known pixel is within 2 of a missing row
    with pytest.raises(SystemExit, match="or more pixels from a missing one"):
        levers.far_from_missing(mask, 0.05, seed=0)


def test_holes_like_missing_holds_out_whole_pieces_near_the_fraction():
    mask = holes_mask()
    fitted, held = levers.holes_like_missing(mask, 0.1, seed=1)
    check_split(mask, fitted, held)
    budget = 0.1 * float(mask.sum())
    assert budget <= float(held.sum()) <= 1.2 * budget
    # held out in pieces (parts of the shifted holes), not pixel by pixel
    pieces, n = ndimage.label(held[0, 0].numpy() > 0.5)
    assert float(held.sum()) / n >= 20
    assert torch.equal(levers.holes_like_missing(mask, 0.1, seed=1)[1], held)


def test_fill_input_predicts_every_pixel_from_its_known_neighbours():
    y = torch.full((1, 3, 32, 32), 0.4)
    y[:, 1] = 0.7
    mask = (torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1)) > 0.5).float()   # 50% missing
    filled = levers.fill_input(y * mask, mask)
    assert torch.allclose(filled, y, atol=1e-5)          # a constant image is filled with itself
    noisy = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    kept = levers.fill_input(noisy * mask, mask, keep=True)
    assert torch.equal(kept[mask.bool()], noisy[mask.bool()])
    plain = levers.fill_input(noisy * mask, mask)
    assert not torch.allclose(plain[mask.bool()], noisy[mask.bool()])   # the pixel itself is left out


def seen_inputs(name: str, steps: int, *, sigma_p: float = 0.03):
    """What a network wrapped by ``perturbation_schedule(name)`` sees, relative to z, at each training pass
    given inputs z + d (d of ones times sigma_p): the factor on d per pass."""
    torch.manual_seed(0)
    net = SkipNet(in_channels=4, out_channels=1, channels_down=[4, 4], channels_up=[4, 4], channels_skip=2)
    cfg = FitConfig(reg_noise_std=sigma_p)
    z = levers.perturbation_schedule(net, name, cfg, (16, 16), seed=0)
    seen = []
    net.register_forward_pre_hook(lambda m, i: seen.append(i[0].clone()))
    net.train()
    d = torch.ones_like(z) * sigma_p
    for _ in range(steps):
        net(z + d)
    net.eval()
    net(z + d)                                  # not a training pass: left as it is
    return [float(((s - z) / d).mean()) for s in seen]


def test_perturbation_ramp_and_drop_scale_the_perturbation_per_training_pass():
    assert seen_inputs("sigma-p-ramp4", 6) == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1, 1], abs=1e-5)
    assert seen_inputs("sigma-p-0.01-from3", 5) == pytest.approx([1, 1, 1, 1 / 3, 1 / 3, 1], abs=1e-5)
    assert seen_inputs("sigma-p-0-from2", 4) == pytest.approx([1, 1, 0, 0, 1], abs=1e-5)
    with pytest.raises(ValueError, match="no perturbation schedule"):
        seen_inputs("sigma-p-0-from2", 1, sigma_p=0.0)


def test_series_keeps_the_last_quality_over_rolled_back_iterations():
    assert levers._series({0: 10.0, 1: 11.0, 3: 12.0}, 5) == [10.0, 11.0, 11.0, 12.0, 12.0]
    assert np.isnan(levers._series({1: 5.0}, 2)[0])


# --- benchmarks/stopping.py: the cases and the replay of a saved series -------------------------

bench_stopping = pytest.importorskip("stopping")


def test_synthetic_cases_are_drawn_reproducibly_at_their_noise_level(tmp_path):
    made = list(bench_stopping.cases(tmp_path, sigmas=(25,), images=("astronaut",)))   # no data folder: synthetic only
    assert [(c[0], c[1]) for c in made] == [("synthetic-astronaut-s25", "denoise"),
                                            ("synthetic-sr4-astronaut", "super-resolve"),
                                            ("synthetic-inpaint-astronaut-s25", "inpaint"),
                                            ("jpeg-astronaut-q10", "jpeg")]
    sr = made.pop(1)
    (_, _, noisy, clean, kw, _), (_, _, masked, clean2, kw2, _), (_, _, jpeg, clean3, kw3, _) = made
    # x4 super-resolution: the centred 256x256 crop and its 64x64 Lanczos reduction, as Set5's are made
    _, _, lr, hr, kw4, metric = sr
    assert kw4 == {"factor": 4} and metric is bench_stopping.psnr_y and hr.shape == (1, 3, 256, 256)
    assert lr.shape == (1, 3, 64, 64) and torch.equal(hr, clean[..., 128:384, 128:384])
    assert float((lr - torch.nn.functional.avg_pool2d(hr, 4)).abs().mean()) < 0.02      # a reduction of hr
    assert kw == {} and torch.equal(clean, clean2) and noisy.shape == clean.shape == (1, 3, 512, 512)
    assert torch.equal(torch.round(noisy * 255), noisy * 255)                # 8-bit values
    rms = float((noisy - clean).pow(2).mean().sqrt()) * 255
    assert 20 < rms < 25.5                                                   # sigma 25, less where clipped
    mask = kw2["mask"]
    assert 0.48 < float(mask.mean()) < 0.52 and float((masked * (1 - mask)).abs().max()) == 0
    again = [c for c in bench_stopping.cases(tmp_path, sigmas=(25,), images=("astronaut",)) if c[1] != "super-resolve"]
    assert torch.equal(again[0][2], noisy) and torch.equal(again[1][4]["mask"], mask)
    # JPEG at quality 10: 8-bit, the same image, visibly degraded but not destroyed
    assert kw3 == {"quality": 10} and torch.equal(clean3, clean) and jpeg.shape == clean.shape   # restore() gets the quality
    assert torch.equal(torch.round(jpeg * 255), jpeg * 255) and torch.equal(again[2][2], jpeg)
    assert 22 < float(bench_stopping.psnr(jpeg, clean)) < 32
    better = [c for c in bench_stopping.cases(tmp_path, sigmas=(), images=("astronaut",), jpeg_qualities=(50,))
              if c[1] == "jpeg"][0]
    assert better[0] == "jpeg-astronaut-q50" and bench_stopping.psnr(better[2], clean) > bench_stopping.psnr(jpeg, clean) + 3


def test_jpeg_cases_on_the_denoising_ground_truths(shared_data):
    made = [c for c in bench_stopping.cases(shared_data, sigmas=(), images=(), jpeg_qualities=(20,))
            if c[1] == "jpeg"]
    assert [c[0] for c in made] == ["jpeg-F16-q20", "jpeg-kodim03-q20", "jpeg-peppers-q20"]
    gt, _ = bench_stopping.npr.load_image(shared_data / "denoise-sigma25" / "kodim03_GT.png")
    _, _, jpeg, clean, kw, _ = made[1]
    assert torch.equal(clean, gt) and jpeg.shape == gt.shape and kw == {"quality": 20}
    assert 25 < float(bench_stopping.psnr(jpeg, clean)) < 40


def test_jpeg_cases_of_named_images_only(tmp_path):
    made = [c for c in bench_stopping.cases(tmp_path, sigmas=(), images=("astronaut",), jpeg_qualities=(5, 70),
                                            jpeg_images=("camera",)) if c[1] == "jpeg"]
    assert [c[0] for c in made] == ["jpeg-camera-q5", "jpeg-camera-q70"]      # astronaut makes no JPEG case now
    (_, _, strong, clean, _, _), (_, _, mild, clean2, _, _) = made
    assert clean.shape == (1, 1, 512, 512) and torch.equal(clean, clean2)      # camera is greyscale, kept so
    assert bench_stopping.psnr(mild, clean) > bench_stopping.psnr(strong, clean) + 5
    with pytest.raises(SystemExit, match="'house' needs .*house_GT.png, which is not there"):
        list(bench_stopping.cases(tmp_path, sigmas=(), images=(), jpeg_images=("house",)))
    with pytest.raises(SystemExit, match="'nope' is neither a ground truth of the data folder"):
        list(bench_stopping.cases(tmp_path, sigmas=(), images=(), jpeg_images=("nope",)))


def test_jpeg_cases_of_the_data_folders_ground_truths(shared_data):
    made = [c for c in bench_stopping.cases(shared_data, sigmas=(), images=(), jpeg_qualities=(5,),
                                            jpeg_images=("house", "butterfly", "zebra")) if c[1] == "jpeg"]
    assert [c[0] for c in made] == ["jpeg-house-q5", "jpeg-butterfly-q5", "jpeg-zebra-q5"]
    shapes = [c[3].shape for c in made]
    assert shapes == [(1, 1, 256, 256), (1, 3, 256, 256), (1, 3, 388, 584)]   # house greyscale, as in the data
    gt, _ = bench_stopping.npr.load_image(shared_data / "sr-set5" / "butterfly_GT.png")
    assert torch.equal(made[1][3], gt) and 18 < float(bench_stopping.psnr(made[1][2], gt)) < 30


def test_drawn_sigma_and_crop_case():
    assert bench_stopping.drawn_sigma("synthetic-coffee-s50") == 50
    assert bench_stopping.drawn_sigma("denoise-F16") == 25
    assert bench_stopping.drawn_sigma("synthetic-inpaint-coffee-s25") is None
    assert bench_stopping.drawn_sigma("sr4-bird") is None
    assert bench_stopping.drawn_sigma("synthetic-sr4-astronaut") is None
    y, mask = torch.rand(1, 3, 40, 60), (torch.rand(1, 1, 40, 60) > 0.5).float()
    name, task, yc, gtc, kw, _ = bench_stopping.crop_case(("inpaint-x", "inpaint", y, y, {"mask": mask}, None), 32)
    assert name == "inpaint-x (crop 32)" and yc.shape[-2:] == gtc.shape[-2:] == kw["mask"].shape[-2:] == (32, 32)
    assert torch.equal(yc, y[..., 4:36, 14:46]) and torch.equal(kw["mask"], mask[..., 4:36, 14:46])
    sr = ("sr4-x", "super-resolve", y, y, {"factor": 4}, None)
    assert bench_stopping.crop_case(sr, 32) is sr and bench_stopping.crop_case(sr, 0) is sr
    assert bench_stopping.drawn_sigma("jpeg-coffee-q10") is None
    name, task, yc, _, kw, _ = bench_stopping.crop_case(("jpeg-x-q10", "jpeg", y, y, {}, None), 32)
    assert (name, task, kw) == ("jpeg-x-q10 (crop 32)", "jpeg", {}) and torch.equal(yc, y[..., 4:36, 14:46])


def test_stopping_refuses_bad_settings_before_writing_anything(monkeypatch, capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stopping.md").write_text("kept")
    for bad, message in ((["--jpeg-qualities", "0"], "between 1 and 95"), (["--sigma-p", "-1"], "0 or more"),
                         (["--betas", "0.9", "1"], r"two numbers in \[0, 1\)"), (["--lr", "0"], "positive"),
                         (["--jpeg-images", "nope"], "neither a ground truth")):
        with pytest.raises(SystemExit, match=message):
            run_main(bench_stopping, monkeypatch, capsys, "--data", str(tmp_path), "--out", str(out), *bad)
    assert (out / "stopping.md").read_text() == "kept"


def test_stopping_overrides_carry_the_settings_given():
    from types import SimpleNamespace
    given = SimpleNamespace(sigma_p=0.02, betas=[0.8, 0.9], lr=0.005, precision="float32")
    assert bench_stopping.overrides(given) == {"reg_noise_std": 0.02, "lr": 0.005, "precision": "float32",
                                               "betas": (0.8, 0.9)}
    assert bench_stopping.overrides(SimpleNamespace(sigma_p=None, betas=None, lr=None, precision=None)) == {}


def test_levers_names_a_jpeg_case_of_any_image_and_quality(tmp_path):
    from types import SimpleNamespace
    a = SimpleNamespace(case="jpeg-camera-q30", data=str(tmp_path), crop=64, noisy=None, gt=None)
    task, y, gt, op, metric, label = levers.problem(a)
    assert (task, label, y.shape) == ("jpeg", "jpeg-camera-q30 (crop 64)", (1, 1, 64, 64))    # camera is greyscale
    assert 28 < float(metric(y, gt)) < 45 and torch.equal(op(y), y)                            # F = identity


def test_replay_of_a_held_out_series_stops_after_the_patience():
    its = list(range(40))
    series = {"iterations": its, "scores": [float(i) for i in its], "rule": {"kind": "held-out"},
              "errors": [(i, abs(i - 10) + 1.0) for i in its]}                # lowest error at iteration 10
    assert bench_stopping.replay(series, patience=5, min_iterations=0, tolerance=0, level=None) == (15, 10, 10.0)
    assert bench_stopping.replay(series, patience=50, min_iterations=0, tolerance=0, level=None) == (39, 10, 10.0)


def test_replay_of_a_settling_series_with_an_absolute_threshold(monkeypatch, capsys, tmp_path):
    its = list(range(300))
    rule = dict(window=50, patience=300, min_iterations=100, tolerance=0.0, tolerance_power=1.0, sample="pixels",
                settled=0.2 / 255)
    series = {"case": "sr4-x", "iterations": its, "scores": [20 + i / 100 for i in its], "noise_level": None,
              "pool": 1, "rule": rule, "variances": [(i, (10 / (1 + i) / 255) ** 2) for i in its[49:]]}
    # root of the variance 10 / (1 + i) grey levels: at most 0.2 from iteration 49, judged from 100
    assert bench_stopping.replay(series, 300, 100, 0.0, None, settled=0.2 / 255) == (100, 100, pytest.approx(21.0))
    assert bench_stopping.replay(series, 300, 100, 0.0, None, settled=0.05 / 255) == (199, 199, pytest.approx(21.99))
    assert bench_stopping.replay(series, 300, 100, 0.0, None) == (299, 299, pytest.approx(22.99))      # no threshold: the cap
    # the std must also have stopped falling fast: at least 0.79 x its value 50 iterations before, from i = 238
    assert bench_stopping.replay(series, 300, 100, 0.0, None, settled=0.2 / 255, settle_lag=50,
                                 settle_ratio=0.79) == (238, 238, pytest.approx(22.38))
    (tmp_path / "sr4-x.json").write_text(json.dumps(series))
    for extra, stop in (([], "100"), (["--settled", "0.05"], "199"), (["--settled", "0"], "299"),
                        (["--settle-lag", "50", "--settle-ratio", "0.79"], "238")):
        rows = table_rows(run_main(bench_stopping, monkeypatch, capsys, "--replay", str(tmp_path), *extra))
        assert rows[0][:2] == ["sr4-x", stop]                   # the series' own threshold unless one is given


def test_a_run_saves_the_loss_and_the_residual_per_iteration(monkeypatch, capsys, tmp_path):
    run_main(bench_stopping, monkeypatch, capsys, "--data", str(tmp_path / "none"), "--images", "astronaut",
             "--only", "jpeg", "--crop", "32", "--iterations", "4", "--out", str(tmp_path))
    series = json.loads((tmp_path / "series" / "jpeg-astronaut-q10.json").read_text())
    assert series["iterations"] == [0, 1, 2, 3] and len(series["losses"]) == 4
    # the residual is the RMS of estimate minus observation in grey levels: the first estimates are far from it
    assert len(series["residuals"]) == 4 and all(10 < r < 255 for r in series["residuals"])
    assert all(loss > 0 for loss in series["losses"])
    assert (series["rule"]["residual_power"], series["rule"]["rise"]) == (1.5, 0.05)     # the JPEG preset's rule
    assert (series["rule"]["settle_lag"], series["rule"]["settle_ratio"]) == (0, 0.0)
    run_main(bench_stopping, monkeypatch, capsys, "--data", str(tmp_path / "none"), "--images", "astronaut",
             "--only", "jpeg", "--jpeg-qualities", "5", "--crop", "32", "--iterations", "2", "--out", str(tmp_path / "q5"))
    strong = json.loads((tmp_path / "q5" / "series" / "jpeg-astronaut-q5.json").read_text())
    assert strong["rule"]["residual_power"] == 2.0           # at quality 8 or less, as restore() given the quality


def test_a_held_out_denoising_run_saves_the_held_out_error(monkeypatch, capsys, tmp_path):
    """--stop held-out: the denoising case fitted as restore(stop="held-out") fits it, its held-out error saved
    per iteration and replayed like an inpainting series."""
    run_main(bench_stopping, monkeypatch, capsys, "--data", str(tmp_path / "none"), "--images", "astronaut",
             "--sigmas", "50", "--only", "synthetic-astronaut-s50", "--crop", "64", "--iterations", "6",
             "--stop", "held-out", "--out", str(tmp_path))
    series = json.loads((tmp_path / "series" / "synthetic-astronaut-s50.json").read_text())
    assert series["iterations"] == list(range(6)) and [i for i, _ in series["errors"]] == list(range(6))
    # against the noisy image: about the noise's variance (50 grey levels, clipped) plus the estimate's error
    assert all(0.02 < e < 0.2 for _, e in series["errors"])
    assert series["rule"]["kind"] == "held-out" and series["rule"]["noisy"] and series["rule"]["held_out"] >= 64
    row = table_rows((tmp_path / "stopping.md").read_text().splitlines())[0]
    assert row[:3] == ["synthetic-astronaut-s50 (crop 64)", "5", "5"]     # before min_iterations 20: the latest
    rows = table_rows(run_main(bench_stopping, monkeypatch, capsys, "--replay", str(tmp_path / "series"),
                               "--patience", "2", "--min-iterations", "0"))
    best = min(range(6), key=lambda i: series["errors"][i][1])
    assert rows[0][1:3] == [str(min(best + 2, 5)), str(best)]
    # --seed: another fit (network, perturbations, held-out pixels) of the same noisy image, said in the table
    run_main(bench_stopping, monkeypatch, capsys, "--data", str(tmp_path / "none"), "--images", "astronaut",
             "--sigmas", "50", "--only", "synthetic-astronaut-s50", "--crop", "64", "--iterations", "2",
             "--stop", "held-out", "--seed", "1", "--out", str(tmp_path / "s1"))
    other = json.loads((tmp_path / "s1" / "series" / "synthetic-astronaut-s50.json").read_text())
    assert other["errors"][0] != series["errors"][0] and other["scores"][0] != series["scores"][0]
    assert "Preset: default, seed 1." in (tmp_path / "s1" / "stopping.md").read_text()


def test_replay_of_the_std_relative_to_the_residual(monkeypatch, capsys, tmp_path):
    its = list(range(400))
    rule = dict(window=50, patience=100, min_iterations=100, tolerance=0.0, tolerance_power=1.0, sample="pixels",
                settled=0.0)
    # std 10 x 0.99^i grey levels; residual 20 x 0.995^i to iteration 200, then falling 0.98 a step: the ratio
    # std / residual^2 is lowest at 200
    series = {"case": "jpeg-x", "iterations": its, "scores": [20 + i / 100 for i in its], "noise_level": None,
              "pool": 1, "rule": rule, "variances": [(i, (10 * 0.99 ** i / 255) ** 2) for i in its[49:]],
              "residuals": [20 * 0.995 ** min(i, 200) * 0.98 ** max(i - 200, 0) for i in its]}
    assert bench_stopping.replay(series, 100, 100, 0.0, None, residual_power=2) == (300, 200, pytest.approx(22.0))
    assert bench_stopping.replay(series, 100, 100, 0.0, None) == (399, 399, pytest.approx(23.99))   # the std alone
    # rise: the ratio must also have grown 50% above its minimum, (0.99 / 0.98^2)^n >= 1.5 from n = 14; a
    # patience of 10 alone would stop at 210
    assert bench_stopping.replay(series, 10, 100, 0.0, None, residual_power=2) == (210, 200, pytest.approx(22.0))
    assert bench_stopping.replay(series, 10, 100, 0.0, None, residual_power=2, rise=0.5) == (
        214, 200, pytest.approx(22.0))
    assert bench_stopping.replay(series, 100, 100, 0.0, None, residual_power=2, rise=0.5) == (
        300, 200, pytest.approx(22.0))
    (tmp_path / "jpeg-x.json").write_text(json.dumps(series))
    lines = run_main(bench_stopping, monkeypatch, capsys, "--replay", str(tmp_path), "--residual-power", "2")
    assert table_rows(lines)[0][:3] == ["jpeg-x", "300", "200"]
    assert lines[-1] == "worst gap 1.99 dB; iterations to the stops 301 of the runs' 400 (75%)"
    (tmp_path / "jpeg-x.json").write_text(json.dumps(dict(series, residuals=[])))
    with pytest.raises(SystemExit, match="no residuals"):
        run_main(bench_stopping, monkeypatch, capsys, "--replay", str(tmp_path), "--residual-power", "2")


# --- benchmarks/residual.py and benchmarks/stretch.py: their tables, on synthetic cases -----------

bench_residual = pytest.importorskip("residual")
bench_stretch = pytest.importorskip("stretch")


def run_main(module, monkeypatch, capsys, *args) -> list[str]:
    """The lines ``module.main()`` prints for the command-line ``args``."""
    monkeypatch.setattr(sys, "argv", [module.__name__, *args])
    module.main()
    return capsys.readouterr().out.splitlines()


def table_rows(lines: list[str]) -> list[list[str]]:
    """The cells of a markdown table's body rows (header and rule left out)."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    return [r for r in rows[1:] if not set(r[0]) <= set("-")]


def test_residual_prints_quality_and_residual_and_finds_the_best(monkeypatch, capsys, tmp_path):
    lines = run_main(bench_residual, monkeypatch, capsys, "--case", "synthetic-astronaut-s25", "--data", str(tmp_path),
                     "--crop", "32", "--iterations", "6", "--every", "1")
    rows = table_rows(lines)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
    quality = [float(r[1]) for r in rows]
    residual, raw = [float(r[2]) for r in rows], [float(r[3]) for r in rows]
    assert all(5 < q < 60 for q in quality)
    # 25 grey levels of noise: the estimate cannot be near the noisy image within six iterations
    assert all(0 < r < 255 for r in residual + raw) and max(residual) > 5
    # the last line, checked against the printed (rounded) column: the best and the first within 0.5 dB of it
    m = re.fullmatch(r"best: ([\d.]+) at iteration (\d+); within 0.5 dB of it from iteration (\d+)", lines[-1])
    best, at, near = float(m[1]), int(m[2]), int(m[3])
    assert best == max(quality) == quality[at - 1]
    assert quality[near - 1] >= best - 0.5 - 0.01 and all(q < best - 0.5 + 0.01 for q in quality[:near - 1])


def test_residual_refuses_bad_arguments(monkeypatch, capsys, tmp_path):
    with pytest.raises(SystemExit, match="must be positive"):
        run_main(bench_residual, monkeypatch, capsys, "--case", "synthetic-astronaut-s25", "--every", "0")
    with pytest.raises(SystemExit, match="no case 'denoise-nothing'"):
        run_main(bench_residual, monkeypatch, capsys, "--case", "denoise-nothing", "--data", str(tmp_path))


def test_stretch_compares_the_held_out_fit_with_every_known_pixel(monkeypatch, capsys, tmp_path):
    # a 64x64 crop of the synthetic noisy inpainting case: about 2000 known pixels, 5% of them held out
    fits, fit = [], bench_stretch.npr.fit

    def spy(y, op, **kw):           # how many known pixels each fit() call fits, for how long, resumed or not
        fits.append((int(op.mask.sum()), kw["config"].num_iter, kw.get("resume") is not None))
        return fit(y, op, **kw)
    monkeypatch.setattr(bench_stretch.npr, "fit", spy)
    lines = run_main(bench_stretch, monkeypatch, capsys, "--case", "synthetic-inpaint-astronaut-s25",
                     "--data", str(tmp_path), "--crop", "64", "--iterations", "4", "--stretch", "2")
    rows = table_rows(lines)
    assert [int(r[0]) for r in rows] == [4, 6]                  # N and N + K
    assert all(5 < float(c) < 60 for r in rows for c in r[1:])
    # the fits it made: held out (N iterations), then every known pixel from its checkpoint, then every
    # known pixel from the start (N + K); the first saw 5% fewer known pixels
    assert [(n, resumed) for _, n, resumed in fits] == [(4, False), (6, True), (6, False)]
    known = [k for k, _, _ in fits]
    assert known[1] == known[2] and 0.04 < 1 - known[0] / known[1] < 0.06


def test_stretch_refuses_a_case_that_is_not_inpainting(monkeypatch, capsys, tmp_path):
    with pytest.raises(SystemExit, match="no inpainting case 'synthetic-astronaut-s25'"):
        run_main(bench_stretch, monkeypatch, capsys, "--case", "synthetic-astronaut-s25", "--data", str(tmp_path))


def test_runtime_levers_profiles_the_iterations_after_the_warm_up():
    runtime_levers = pytest.importorskip("runtime_levers")
    y = torch.rand(1, 3, 32, 32)
    op = runtime_levers._operator("super-resolve", y[..., :8, :8], None, 4)
    prof = torch.profiler.profile()
    spi, first = runtime_levers.time_fit("super-resolve", y[..., :8, :8], y, op, None, None, True, False, {},
                                         iterations=6, warmup=2, profile=prof)
    assert spi > 0 and first > 0
    steps = [e for e in prof.key_averages() if e.key == "Optimizer.step#Adam.step"]
    assert len(steps) == 1 and steps[0].count == 3      # iterations 4 to 6: after the warm-up and the one it starts at


def test_levers_name_any_betas_for_any_task():
    assert levers.lever("inpaint", "betas-0.8-0.9") == ({}, {"betas": (0.8, 0.9)})
    assert levers.lever("denoise", "betas-0.5-0.99") == ({}, {"betas": (0.5, 0.99)})
    assert levers.lever("super-resolve", "default") == levers.LEVERS["other"]["default"]
    assert levers.lever("inpaint", "betas-0.8") is None and levers.lever("denoise", "no-such-lever") is None


def _restarts_and_separate_fits(name: str, iterations: int, seed: int, seeds: tuple, draw: int):
    """(psnr, gt, scores of ``levers.run_staged(name)``, each of ``seeds``' estimates per iteration from a fit of
    its own) on a 32x32 inpainting problem drawn from ``draw``."""
    from neuralprior import fit
    from neuralprior.metrics import psnr
    from neuralprior.operators import Mask
    from neuralprior.tasks import _configured_preset

    g = torch.Generator().manual_seed(draw)
    gt = torch.rand(1, 1, 32, 32, generator=g)
    op = Mask((torch.rand(1, 1, 32, 32, generator=g) > 0.5).float())
    y = gt * op.mask
    preset = _configured_preset("inpaint", "default", dict(num_iter=iterations))
    scores, _, _ = levers.run_staged(name, y, gt, op, psnr, preset, preset.build_network(1, seed=seed), iterations,
                                     seed)
    kept = {s: [] for s in seeds}
    for one, k in kept.items():
        fit(y, op, net=preset.build_network(1, seed=one), config=preset.fit, stop="none", seed=one,
            callback=lambda s, k=k: k.append(s.estimate.detach().clone()))
    return psnr, gt, scores, kept


def test_restarts_average_the_two_fits_estimates_of_the_same_iteration():
    """``restarts-2`` scores, at each iteration, the average of both seeds' estimates of that iteration
    (fit() updates its running estimate in place, so each must be copied when kept)."""
    psnr, gt, scores, kept = _restarts_and_separate_fits("restarts-2", 5, 0, (0, 1), draw=0)
    expected = [psnr((a + b) / 2, gt) for a, b in zip(kept[0], kept[1])]
    assert scores == pytest.approx(expected, abs=1e-4)
    assert psnr((kept[0][0] + kept[1][0]) / 2, gt) != pytest.approx(psnr((kept[0][-1] + kept[1][0]) / 2, gt), abs=1e-3)


def test_restarts_3_average_three_seeds_and_the_lever_names_resolve():
    """``wide-top-restarts-3`` and ``wide-top-lr-decay-restarts-2`` are levers; ``restarts-N`` averages N seeds."""
    assert levers.lever("inpaint", "wide-top-restarts-3")[0] == levers.WIDE_TOP
    assert levers.lever("inpaint", "wide-top-lr-decay-restarts-2")[1] == {"lr_decay_to": 0.1}
    psnr, gt, scores, kept = _restarts_and_separate_fits("restarts-3", 4, 2, (2, 3, 4), draw=1)
    assert scores == pytest.approx([psnr((a + b + c) / 3, gt) for a, b, c in zip(*kept.values())], abs=1e-4)
    assert scores != pytest.approx([psnr((a + b) / 2, gt) for a, b in zip(kept[2], kept[3])], abs=1e-3)


def test_set5_cases_at_other_factors(shared_data):
    made = {c[0]: c for c in bench_stopping.cases(shared_data, sigmas=(), images=(), jpeg_qualities=(),
                                                  sr_factors=(2, 3, 4)) if c[1] == "super-resolve"}
    assert {"sr2-bird", "sr4-bird", "sr2-woman"} <= set(made)
    _, _, lr2, hr2, kw2, metric = made["sr2-woman"]
    _, _, lr4, hr4, kw4, _ = made["sr4-woman"]
    assert kw2 == {"factor": 2} and kw4 == {"factor": 4} and metric is bench_stopping.psnr_y
    assert torch.equal(hr2, hr4) and hr2.shape[-2:] == (320, 224)             # cropped to multiples of 32
    assert lr2.shape[-2:] == (160, 112) and lr4.shape[-2:] == (80, 56)
    _, _, lr3, hr3, kw3, _ = made["sr3-woman"]                              # 344x228: multiples of 96 for x3
    assert kw3 == {"factor": 3} and hr3.shape[-2:] == (288, 192) and lr3.shape[-2:] == (96, 64)


def test_a_clipped_denoising_case_scores_the_average_and_its_unclipped_estimate(monkeypatch, capsys, tmp_path):
    """On clipped noise the estimate is the average unclipped: the report scores both at the returned iterate,
    the rule watches the average (as fit()'s does), and a case without clipping (JPEG) leaves the cells empty."""
    run_main(bench_stopping, monkeypatch, capsys, "--data", str(tmp_path / "none"), "--images", "hubble_deep_field",
             "--only", "synthetic-hubble_deep_field-s50", "jpeg", "--sigmas", "50", "--crop", "32", "--iterations", "60",
             "--out", str(tmp_path))
    rows = list(__import__("csv").DictReader((tmp_path / "stopping.csv").open()))
    noisy, jpeg = rows
    assert noisy["case"].startswith("synthetic-hubble") and 35 < float(noisy["unclip_sigma"]) < 60
    # nearly black: the average is too bright, the unclipped estimate far better at the same iterate
    assert float(noisy["psnr_auto"]) > float(noisy["psnr_auto_average"]) + 1.0, dict(noisy)
    assert jpeg["case"].startswith("jpeg") and jpeg["psnr_auto_average"] == ""
    table = (tmp_path / "stopping.md").read_text().splitlines()
    assert table[-2].endswith(f"| {noisy['psnr_auto_average']}, {noisy['oracle_peak_average']} "
                              f"({noisy['oracle_it_average']}), gain {float(noisy['unclip_gain']):+.2f} |")
    assert table[-1].endswith("| - |")
    gain = float(noisy["psnr_auto"]) - float(noisy["psnr_auto_average"])     # the same, before rounding
    assert abs(float(noisy["unclip_gain"]) - gain) <= 0.011 and float(noisy["gap_average"]) >= 0
    series = json.loads((tmp_path / "series" / "synthetic-hubble_deep_field-s50.json").read_text())
    assert len(series["scores_average"]) == len(series["scores"]) == 60


def test_replay_with_a_minimum_decrease(monkeypatch, capsys, tmp_path):
    """--min-decrease D: a new minimum counts only D below the last counted one; a std edging down by 1% in
    200 iterations after iteration 100 ends the run at 300 with the estimate of 100, not at the cap."""
    its = list(range(600))
    std = [1.0 - 0.004 * i if i <= 100 else 0.6 * (1 - 0.00005 * (i - 100)) for i in its]      # grey levels
    rule = dict(window=50, patience=200, min_iterations=100, tolerance=0.0, tolerance_power=1.0)
    series = {"case": "slow", "iterations": its, "scores": [20 + i / 100 for i in its], "noise_level": None,
              "pool": 1, "rule": rule, "variances": [(i, (std[i] / 255) ** 2) for i in its[49:]]}
    assert bench_stopping.replay(series, 200, 100, 0.0, None) == (599, 599, pytest.approx(25.99))
    assert bench_stopping.replay(series, 200, 100, 0.0, None, min_decrease=0.02) == (300, 100, pytest.approx(21.0))
    (tmp_path / "slow.json").write_text(json.dumps(series))
    for extra, stop in (([], "599"), (["--min-decrease", "0.02"], "300")):
        rows = table_rows(run_main(bench_stopping, monkeypatch, capsys, "--replay", str(tmp_path), *extra))
        assert rows[0][:3] == ["slow", stop, "599" if stop == "599" else "100"]
    with pytest.raises(SystemExit, match="--min-decrease must be in"):
        run_main(bench_stopping, monkeypatch, capsys, "--replay", str(tmp_path), "--min-decrease", "1")
