"""The benchmark harness on a tiny data folder laid out like the development set."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from neuralprior.bench import baselines, load_suite, score
from neuralprior.cli import main


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    base = np.clip(np.add.outer(np.arange(64), np.arange(64)) * 2, 0, 255).astype(np.uint8)
    (tmp_path / "denoise-sigma25").mkdir()
    (tmp_path / "inpaint-half").mkdir()
    (tmp_path / "sr-set5").mkdir()
    rgb = np.stack([base, base[::-1], base.T], -1)
    noisy = np.clip(rgb + rng.normal(0, 25, rgb.shape), 0, 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "denoise-sigma25" / "grad_GT.png")
    Image.fromarray(noisy).save(tmp_path / "denoise-sigma25" / "grad_noisy.png")
    gray = np.clip(base, 1, 255).astype(np.uint8)
    masked = np.where(rng.random(gray.shape) < 0.5, 0, gray).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "inpaint-half" / "grad_GT.png")
    Image.fromarray(masked).save(tmp_path / "inpaint-half" / "grad_masked.png")
    Image.fromarray(np.pad(rgb, ((0, 5), (0, 7), (0, 0)))).save(tmp_path / "sr-set5" / "grad_GT.png")
    with open(tmp_path / "anchors.csv", "w") as f:
        f.write("task,image,method,metric,value\ndenoise-sigma25,grad,DIP (published output),psnr_rgb,31.5\n")
    return tmp_path


def test_suites_follow_the_protocols(data):
    (d,) = load_suite(data, "denoise")
    (i,) = load_suite(data, "inpaint")
    (s,) = load_suite(data, "sr4")
    assert d.observation.shape == d.truth.shape == (1, 3, 64, 64)
    assert i.mask.mean().item() == pytest.approx(0.5, abs=0.05)
    assert s.truth.shape[-2:] == (64, 64) and s.observation.shape[-2:] == (16, 16)   # crop to 32, LR = HR / 4
    # the baselines beat the degraded input on the synthetic gradient
    for case in (d, i):
        for name, fn in baselines(case.suite).items():
            assert score(case, fn(case))[0] > score(case, case.observation)[0] + 3, name
    assert score(s, baselines("sr4")["bicubic"](s))[0] > 25


def test_bench_command_writes_tables_with_published_numbers(data, tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["bench", "denoise", "inpaint", "sr4", "--data", str(data), "--out", str(out), "--iterations", "3",
            "--device", "cpu", "--methods", "dip", "TV", "biharmonic", "bicubic"]
    assert main(argv) == 0
    md = (out / "results.md").read_text()
    assert "Command: `neuralprior bench denoise" in md and "Machine:" in md
    assert "| grad | " in md and "*31.50*" in md and "DIP (default)" in md
    rows = list(csv.DictReader(open(out / "results.csv")))
    methods = {(r["suite"], r["method"]) for r in rows}
    assert {("denoise", "DIP (default)"), ("denoise", "TV"), ("inpaint", "biharmonic"), ("sr4", "bicubic")} <= methods
    dip = [r for r in rows if r["method"] == "DIP (default)"]
    assert all(r["iterations"] == "3" for r in dip)
    assert json.loads((out / "results.json").read_text())["meta"]["preset"] == "default"


def test_bench_restarts_help_says_the_average_is_scored(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "seeds 0, 1, ..., each with its own stop, and score the average" in text


def test_bench_restarts_average_fits_and_say_so(data, tmp_path):
    out = tmp_path / "res"
    argv = ["bench", "inpaint", "--data", str(data), "--out", str(out), "--iterations", "3", "--device", "cpu",
            "--methods", "dip", "--restarts", "2"]
    assert main(argv) == 0
    (dip,) = [r for r in csv.DictReader(open(out / "results.csv")) if r["method"].startswith("DIP")]
    assert dip["method"] == "DIP (default, 2 fits)"
    assert dip["iterations"] == "6"                      # both fits' iterations, one after the other
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["restarts"] == 2 and "--restarts 2" in meta["command"]


def test_bench_errors_are_one_line(data, tmp_path, capsys):
    assert main(["bench", "--data", str(tmp_path / "none")]) == 2
    assert main(["bench", "sr5", "--data", str(data)]) == 2
    assert main(["bench", "--data", str(data), "--restarts", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(l.startswith("neuralprior: error:") for l in err)
