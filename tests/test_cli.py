"""The command line end to end on tiny images: the contract scripts rely on."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neuralprior import get_preset, load_image
from neuralprior.metrics import clipped_noise_rms, unclip
from neuralprior.cli import main

FAST = ["--iterations", "3", "--stop", "none", "--device", "cpu", "--quiet"]


def _png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def rgb(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    return _png(tmp_path / "in.png", rng.integers(0, 256, (20, 23, 3), dtype=np.uint8))


def run(*args) -> int:
    return main([str(a) for a in args])


def test_denoise_writes_same_size_and_report(rgb, tmp_path):
    out, rep = tmp_path / "out.png", tmp_path / "r.json"
    assert run("denoise", rgb, "-o", out, "--report", rep, "--gt", rgb, *FAST) == 0
    im = Image.open(out)
    assert im.size == (23, 20) and im.mode == "RGB"
    r = json.loads(rep.read_text())
    for key in ("task", "preset", "device", "iterations_run", "stopped_at", "seconds",
                "psnr", "ssim", "oracle_best_psnr", "oracle_best_iteration"):
        assert key in r, key
    assert r["task"] == "denoise" and r["iterations_run"] == 3 and r["device"] == "cpu"
    assert len(r["history"]["psnr"]) == 3
    assert r["oracle_best_psnr"] == max(r["history"]["psnr"])


def test_noise_sigma_and_loss_options_reach_the_fit(rgb, tmp_path):
    out, rep = tmp_path / "out.png", tmp_path / "r.json"
    rng = np.random.default_rng(1)
    dark = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    dark[:, :16] = np.where(rng.random((32, 16, 3)) < 0.7, 0, rng.integers(1, 30, (32, 16, 3)))  # noise clipped at black
    image = _png(tmp_path / "dark.png", dark)
    assert run("denoise", image, "-o", out, "--report", rep, "--noise-sigma", 25, *FAST) == 0
    cfg = json.loads(rep.read_text())["config"]
    # the std before clipping is recorded, and SURE gets the clipped noise's rms: well below it here
    assert cfg["loss"] == "sure" and cfg["noise_sigma_given"] == 25 / 255
    assert cfg["noise_sigma"] == pytest.approx(clipped_noise_rms(load_image(image)[0], 25 / 255))
    assert cfg["noise_sigma"] < 0.92 * 25 / 255
    assert json.loads(rep.read_text())["network"]["in_channels"] == 3          # z is the RGB image
    assert cfg["unclip"] is True and cfg["unclip_sigma"] == 25 / 255           # returned unclipped, at the given std
    unclipped = load_image(out)[0]
    assert run("denoise", image, "-o", out, "--report", rep, "--noise-sigma", 25, "--no-unclip", *FAST) == 0
    cfg = json.loads(rep.read_text())["config"]
    assert cfg["unclip"] is False and cfg["unclip_sigma"] is None
    # the same fit, its average unclipped or not (to within the 8-bit rounding of the two files)
    assert (unclip(load_image(out)[0], 25 / 255) - unclipped).abs().max() < 1.5 / 255
    assert run("denoise", rgb, "-o", out, "--report", rep, "--loss", "mse", "--preset", "paper", *FAST) == 0
    assert json.loads(rep.read_text())["config"]["loss"] == "mse"


def test_sigma_p_option_replaces_the_presets_perturbation(rgb, tmp_path):
    out, rep = tmp_path / "out.png", tmp_path / "r.json"
    assert run("denoise", rgb, "-o", out, "--report", rep, "--noise-sigma", 51, *FAST) == 0
    scale = get_preset("denoise").fit.reg_noise_per_variance
    cfg = json.loads(rep.read_text())["config"]
    assert cfg["noise_sigma_given"] == 0.2 and cfg["noise_sigma"] == pytest.approx(clipped_noise_rms(load_image(rgb)[0], 0.2))
    assert cfg["reg_noise_std"] == pytest.approx(scale * cfg["noise_sigma"] ** 2)                  # x the variance used
    assert run("denoise", rgb, "-o", out, "--report", rep, "--noise-sigma", 51, "--sigma-p", 0.02, *FAST) == 0
    cfg = json.loads(rep.read_text())["config"]
    assert cfg["reg_noise_std"] == 0.02 and cfg["reg_noise_per_variance"] == 0


def test_optimizer_option_reaches_the_fit(rgb, tmp_path, capsys):
    out, rep = tmp_path / "out.png", tmp_path / "r.json"
    assert run("denoise", rgb, "-o", out, "--report", rep, *FAST) == 0
    assert json.loads(rep.read_text())["config"]["optimizer"] == "adam"
    assert run("denoise", rgb, "-o", out, "--report", rep, "--optimizer", "radam", *FAST) == 0
    assert json.loads(rep.read_text())["config"]["optimizer"] == "radam"
    assert run("denoise", rgb, "-o", tmp_path / "bad.png", "--optimizer", "sgd", *FAST) == 2
    assert "invalid choice: 'sgd'" in capsys.readouterr().err and not (tmp_path / "bad.png").exists()


def test_betas_option_reaches_the_fit(rgb, tmp_path, capsys):
    out, rep = tmp_path / "out.png", tmp_path / "r.json"
    assert run("denoise", rgb, "-o", out, "--report", rep, "--betas", "0.8,0.95", *FAST) == 0
    assert json.loads(rep.read_text())["config"]["betas"] == [0.8, 0.95]
    for bad in ("0.9", "0.9,1", "a,b", "0.9,0.99,0.9"):
        assert run("denoise", rgb, "-o", tmp_path / "bad.png", "--betas", bad, *FAST) == 2
        assert "expected two numbers in [0, 1)" in capsys.readouterr().err and not (tmp_path / "bad.png").exists()


def test_super_resolve_output_is_factor_times_larger(rgb, tmp_path):
    out = tmp_path / "sr.png"
    assert run("super-resolve", rgb, "--factor", "3", "-o", out, *FAST) == 0
    assert Image.open(out).size == (69, 60)


def test_super_resolve_kernel_reaches_the_model_and_the_report(rgb, tmp_path, monkeypatch):
    import neuralprior.tasks as tasks
    seen = []
    real = tasks.restore
    monkeypatch.setattr(tasks, "restore", lambda *a, **k: seen.append(k.get("kernel")) or real(*a, **k))
    rep = tmp_path / "r.json"
    assert run("super-resolve", rgb, "--factor", "2", "--kernel", "lanczos3", "-o", tmp_path / "a.png",
               "--report", rep, *FAST) == 0
    assert run("super-resolve", rgb, "--factor", "2", "-o", tmp_path / "b.png", *FAST) == 0
    assert seen == ["lanczos3", "lanczos2"] and json.loads(rep.read_text())["kernel"] == "lanczos3"


def test_inpaint_with_mask_file_and_zeros(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(1, 256, (24, 24), dtype=np.uint8)
    mask = (rng.random((24, 24)) > 0.5).astype(np.uint8) * 255
    img_masked = np.where(mask > 0, img, 0).astype(np.uint8)
    src, m = _png(tmp_path / "g.png", img_masked), _png(tmp_path / "m.png", mask)
    assert run("inpaint", src, "--mask", m, "-o", tmp_path / "a.png", *FAST) == 0
    assert run("inpaint", src, "--mask", "zeros", "-o", tmp_path / "b.png", *FAST) == 0
    a = np.asarray(Image.open(tmp_path / "a.png"))
    assert a.shape == (24, 24) and Image.open(tmp_path / "a.png").mode == "L"


def test_jpeg_and_reconstruct_keep_mode_and_depth(tmp_path):
    rng = np.random.default_rng(2)
    rgba = _png(tmp_path / "a.png", rng.integers(0, 256, (16, 16, 4), dtype=np.uint8))
    assert run("jpeg", rgba, "-o", tmp_path / "o.png", *FAST) == 0
    o = Image.open(tmp_path / "o.png")
    assert o.mode == "RGBA"
    assert np.array_equal(np.asarray(o)[..., 3], np.asarray(Image.open(rgba))[..., 3])  # alpha carried through
    g16 = tmp_path / "g16.png"
    Image.fromarray(rng.integers(0, 65536, (16, 16), dtype=np.uint16)).save(g16)
    assert run("reconstruct", g16, "-o", tmp_path / "o16.png", *FAST) == 0
    assert np.asarray(Image.open(tmp_path / "o16.png")).dtype in (np.uint16, np.int32)
    assert Image.open(tmp_path / "o16.png").mode.startswith("I")


def test_same_seed_same_output_file(rgb, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert run("denoise", rgb, "-o", a, "--seed", 5, *FAST) == 0
    assert run("denoise", rgb, "-o", b, "--seed", 5, *FAST) == 0
    assert a.read_bytes() == b.read_bytes()


def test_snapshots(rgb, tmp_path):
    out = tmp_path / "o.png"
    assert run("denoise", rgb, "-o", out, "--save-every", 1, "--snapshots", tmp_path / "snaps", *FAST) == 0
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [
        "iter_000001.png", "iter_000002.png", "iter_000003.png"]


def test_snapshots_of_the_stretch_after_a_held_out_stop_are_named_apart(tmp_path):
    rng = np.random.default_rng(0)
    image = _png(tmp_path / "in.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = _png(tmp_path / "mask.png", np.where(rng.random((64, 64)) > 0.5, 255, 0).astype(np.uint8))
    snaps = tmp_path / "snaps"
    assert run("inpaint", image, "--mask", mask, "-o", tmp_path / "o.png", "--iterations", 12, "--device", "cpu",
               "--quiet", "--save-every", 2, "--snapshots", snaps) == 0
    # 12 iterations with 5% of the known pixels held out, then 3 on every known pixel from iteration 11
    assert sorted(p.name for p in snaps.iterdir()) == [f"iter_{i:06d}.png" for i in range(2, 13, 2)] + [
        "stretch_000014.png"]


def test_animation_and_comparison_figure(rgb, tmp_path, capsys):
    gif, fig = tmp_path / "run.gif", tmp_path / "compare.png"
    assert run("denoise", rgb, "-o", tmp_path / "o.png", "--gt", rgb, "--animation", gif, "--compare", fig,
               "--iterations", 5, "--stop", "none", "--device", "cpu", "--save-every", 2) == 0
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 3                  # iterations 0, 2, 4
    with Image.open(fig) as im:
        assert im.format == "PNG" and im.size[0] > 3 * im.size[1] / 2  # panels side by side
    out = capsys.readouterr().out
    assert f"animation: {gif} (3 frames)" in out and f"comparison: {fig}" in out


@pytest.mark.parametrize("task", [["inpaint", "--mask", "zeros"], ["super-resolve", "--factor", "2"], ["jpeg"]])
def test_comparison_figure_of_every_task_kind(rgb, tmp_path, task):
    fig = tmp_path / "c.png"
    assert run(task[0], rgb, *task[1:], "-o", tmp_path / "o.png", "--compare", fig, "--animation",
               tmp_path / "a.gif", *FAST) == 0
    assert Image.open(fig).format == "PNG" and Image.open(tmp_path / "a.gif").n_frames > 1


def test_mri_phantom_and_demo_comparison_and_animation(tmp_path):
    assert run("mri", "--phantom", "--size", 16, "-o", tmp_path / "mri", "--compare", tmp_path / "m.png",
               "--animation", tmp_path / "m.gif", *FAST) == 0
    assert run("demo", "--size", 16, "-o", tmp_path / "demo", "--compare", tmp_path / "d.png",
               "--animation", tmp_path / "d.gif", *FAST) == 0
    for name in ("m.png", "d.png"):
        assert Image.open(tmp_path / name).format == "PNG"
    for name in ("m.gif", "d.gif"):
        assert Image.open(tmp_path / name).n_frames > 1


def test_batch_writes_one_animation_and_figure_per_input(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        _png(src / name, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    assert run("denoise", src, "-o", tmp_path / "out", "--animation", tmp_path / "gifs", "--compare",
               tmp_path / "figs", *FAST) == 0
    assert sorted(p.name for p in (tmp_path / "gifs").iterdir()) == ["a.gif", "b.gif"]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["a.png", "b.png"]
    assert run("denoise", src, "-o", tmp_path / "out2", "--animation", tmp_path / "one.gif", *FAST) == 2
    assert not (tmp_path / "out2").exists() and not (tmp_path / "one.gif").exists()


@pytest.mark.parametrize("argv, message", [
    (["denoise", "{missing}", "-o", "{out}"], "no such file"),
    (["denoise", "{dir}", "-o", "{out}"], "no image files found"),       # a folder is a batch: here an empty one
    (["denoise", "{empty}", "-o", "{out}"], "empty file"),
    (["denoise", "{text}", "-o", "{out}"], "not a readable image"),
    (["denoise", "{truncated}", "-o", "{out}"], "corrupt"),
    (["denoise", "{tiny}", "-o", "{out}"], "at least 2x2"),
    (["inpaint", "{rgb}", "--mask", "{badmask}", "-o", "{out}"], "mask is"),
    (["inpaint", "{rgb}", "--mask", "{zeromask}", "-o", "{out}"], "no known pixel"),
    (["super-resolve", "{rgb}", "--factor", "0", "-o", "{out}"], "positive integer"),
    (["super-resolve", "{rgb}", "--factor", "-1", "-o", "{out}"], "positive integer"),
    (["super-resolve", "{rgb}", "--factor", "2.5", "-o", "{out}"], "positive integer"),
    (["super-resolve", "{rgb}", "--factor", "2", "--kernel", "gauss", "-o", "{out}"], "invalid choice"),
    (["denoise", "{rgb}", "-o", "{out}", "--preset", "nosuch"], "unknown preset"),
    (["denoise", "{rgb}", "-o", "{out}", "--bogus"], "unrecognized arguments"),
    (["denoise", "{rgb}", "-o", "{tmp}/missing/out.png"], "does not exist"),
    (["denoise", "{rgb}", "-o", "{rgb}"], "overwrite the input"),
    (["denoise", "{rgb}", "-o", "{tmp}/out.xyz"], "unknown output format"),
    (["denoise", "{rgb}", "-o", "{out}", "--animation", "{tmp}/missing/a.gif"], "does not exist"),
    (["denoise", "{rgb}", "-o", "{out}", "--animation", "{tmp}/a.mp4"], "unknown animation format"),
    (["denoise", "{rgb}", "-o", "{out}", "--animation", "{dir}"], "unknown animation format"),
    (["denoise", "{rgb}", "-o", "{out}", "--compare", "{tmp}/c.bmp"], "unknown figure format"),
    (["denoise", "{rgb}", "-o", "{out}", "--compare", "{tmp}/missing/c.png", "--save-every", "1"], "does not exist"),
    (["mri", "--phantom", "-o", "{tmp}/dir", "--compare", "{tmp}/c.gif"], "unknown figure format"),
    (["denoise", "{rgb}", "-o", "{out}", "--stop", "soon"], "stop"),
    (["denoise", "{rgb}", "-o", "{out}", "--iterations", "0"], "positive integer"),
    (["denoise", "{rgb}", "-o", "{out}", "--device", "cuda:7"] if not __import__("torch").cuda.is_available()
     else ["denoise", "{rgb}", "-o", "{out}", "--device", "warp"], "device"),
])
def test_bad_input_one_line_error_nonzero_exit_nothing_written(argv, message, tmp_path, rgb, capsys):
    (tmp_path / "dir").mkdir()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image\n")
    full = (tmp_path / "full.png")
    _png(full, np.zeros((40, 40, 3), np.uint8) + 100)
    (tmp_path / "truncated.png").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    _png(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    _png(tmp_path / "badmask.png", np.full((5, 5), 255, np.uint8))
    _png(tmp_path / "zeromask.png", np.zeros((20, 23), np.uint8))
    names = dict(missing=tmp_path / "nope.png", dir=tmp_path / "dir", empty=tmp_path / "empty.png",
                 text=tmp_path / "text.png", truncated=tmp_path / "truncated.png", tiny=tmp_path / "tiny.png",
                 badmask=tmp_path / "badmask.png", zeromask=tmp_path / "zeromask.png", rgb=rgb,
                 out=tmp_path / "out.png", tmp=tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    rgb_bytes = rgb.read_bytes()
    argv = [a.format(**names) for a in argv]
    code = run(argv[0], *FAST, *argv[1:])              # the case's own options come last and win
    err = capsys.readouterr().err
    assert code != 0
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("neuralprior: error:"), err
    assert message in lines[0]
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before      # nothing written
    assert rgb.read_bytes() == rgb_bytes                             # input untouched


def test_force_allows_overwriting_input(rgb):
    assert run("denoise", rgb, "-o", rgb, "--force", *FAST) == 0


def test_presets_command_lists_every_task(capsys):
    assert run("presets") == 0
    out = capsys.readouterr().out
    for task in ("denoise", "inpaint", "super-resolve", "jpeg", "reconstruct"):
        assert f"| {task} | paper |" in out and f"| {task} | default |" in out


def test_plot_from_report(rgb, tmp_path):
    rep = tmp_path / "r.json"
    assert run("denoise", rgb, "-o", tmp_path / "o.png", "--gt", rgb, "--report", rep, *FAST) == 0
    assert run("plot", rep, "-o", tmp_path / "curve.png") == 0
    assert Image.open(tmp_path / "curve.png").size[0] > 100
    assert run("plot", tmp_path / "o.png", "-o", tmp_path / "c2.png") != 0


def test_demo_runs_and_gains(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run("demo", "-o", out, "--size", "64", "--iterations", "400", "--stop", "none", "--device", "cpu") == 0
    for name in ("noisy.png", "restored.png", "clean.png", "side_by_side.png", "report.json"):
        assert (out / name).is_file()
    r = json.loads((out / "report.json").read_text())
    assert r["psnr"] > r["input_psnr"] + 1.0
    assert "PSNR before" in capsys.readouterr().out


def test_console_script_and_sigterm_writes_best_so_far(rgb, tmp_path):
    """SIGTERM mid-run: the best result so far is written, the report says interrupted, exit is non-zero."""
    exe = Path(sys.executable).with_name("neuralprior")
    out, rep = tmp_path / "o.png", tmp_path / "r.json"
    big = _png(tmp_path / "big.png", np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    proc = subprocess.Popen([str(exe), "denoise", str(big), "-o", str(out), "--report", str(rep), "--iterations",
                             "100000", "--stop", "none", "--device", "cpu", "--save-every", "1",
                             "--snapshots", str(tmp_path / "s"), "-q"], stderr=subprocess.PIPE, text=True)
    import time
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "s").exists() or not any((tmp_path / "s").glob("*.png")):
        time.sleep(0.2)
        if time.time() > deadline:
            break
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert Image.open(out).size == (96, 96)
    assert json.loads(rep.read_text())["interrupted"] is True


# --- batches, checkpoints, warnings --------------------------------------------------------

def _batch_folder(tmp_path: Path) -> Path:
    src = tmp_path / "batch"
    src.mkdir()
    rng = np.random.default_rng(3)
    for name in ("a.png", "b.png", "c.png"):
        _png(src / name, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (src / "b.png").write_bytes(b"broken")                          # one failing file
    (src / "notes.txt").write_text("not an image")                  # ignored: not an image suffix
    return src


def test_batch_folder_continues_after_a_failure_and_skips_done_files(tmp_path, capsys):
    src, out = _batch_folder(tmp_path), tmp_path / "out"
    assert run("denoise", src, "-o", out, "--iterations", 2, "--stop", "none", "--device", "cpu") == 2
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert "| b.png | failed |" in captured.out and "| a.png | ok |" in captured.out
    assert "b.png" in captured.err and "Traceback" not in captured.err
    before = (out / "a.png").stat().st_mtime_ns
    (src / "b.png").unlink()
    assert run("denoise", src, "-o", out, "--iterations", 2, "--stop", "none", "--device", "cpu") == 0
    assert "| a.png | skipped (done) |" in capsys.readouterr().out
    assert (out / "a.png").stat().st_mtime_ns == before               # finished outputs are not redone


def test_batch_glob_with_reports(tmp_path):
    src = _batch_folder(tmp_path)
    (src / "b.png").unlink()
    out, reps = tmp_path / "o", tmp_path / "reports"
    assert run("denoise", str(src / "*.png"), "-o", out, "--report", reps, *FAST) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert sorted(p.name for p in reps.iterdir()) == ["a.json", "c.json"]


def test_batch_needs_an_output_folder(tmp_path, capsys):
    src = _batch_folder(tmp_path)
    assert run("denoise", src, "-o", tmp_path / "x.png", *FAST) == 2
    assert "must be a folder" in capsys.readouterr().err


def test_resume_from_checkpoint_gives_the_same_file_as_an_uninterrupted_run(rgb, tmp_path):
    full, part, resumed, ck = tmp_path / "full.png", tmp_path / "part.png", tmp_path / "res.png", tmp_path / "ck.pt"
    opts = ["--stop", "none", "--device", "cpu", "--quiet", "--seed", "2"]
    assert run("denoise", rgb, "-o", full, "--iterations", 12, *opts) == 0
    # a first run that ends at 7 iterations leaves a checkpoint; the resumed run goes on to 12
    assert run("denoise", rgb, "-o", part, "--iterations", 7, "--checkpoint", ck, *opts) == 0
    assert run("denoise", rgb, "-o", resumed, "--iterations", 12, "--resume", ck, *opts) == 0
    assert resumed.read_bytes() == full.read_bytes()
    assert part.read_bytes() != full.read_bytes()


def test_resume_with_other_settings_is_refused(rgb, tmp_path, capsys):
    ck = tmp_path / "ck.pt"
    assert run("denoise", rgb, "-o", tmp_path / "a.png", "--checkpoint", ck, *FAST) == 0
    assert run("denoise", rgb, "-o", tmp_path / "b.png", "--resume", ck, "--lr", "0.5", *FAST) == 2
    assert "other settings (lr)" in capsys.readouterr().err
    assert run("denoise", rgb, "-o", tmp_path / "c.png", "--resume", tmp_path / "nope.pt", *FAST) == 2


def test_non_binary_mask_is_thresholded_with_a_one_line_warning(tmp_path, capsys):
    img = _png(tmp_path / "i.png", np.full((16, 16), 120, np.uint8))
    mask = _png(tmp_path / "m.png", np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1)))
    assert run("inpaint", img, "--mask", mask, "-o", tmp_path / "o.png", *FAST) == 0
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("neuralprior: warning:") and "not binary" in err[0]


def test_jpeg_warns_on_mild_artefacts_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for quality, warned in ((70, True), (20, False)):
        Image.fromarray(pixels).save(tmp_path / f"q{quality}.jpg", quality=quality)
        assert run("jpeg", tmp_path / f"q{quality}.jpg", "-o", tmp_path / f"o{quality}.png", *FAST) == 0
        err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
        assert err == ([f"neuralprior: warning: {tmp_path / 'q70.jpg'}: JPEG quality about 70: on such mild artefacts "
                        "the result was measured 0.1 to 3.9 dB under the input (qualities 50 and 70; see "
                        "docs/stopping.md)"] if warned else [])
        assert (tmp_path / f"o{quality}.png").is_file()


def test_restarts_save_the_average_and_report_each_fit(rgb, tmp_path, capsys):
    out, rep = tmp_path / "out.png", tmp_path / "r.json"
    opts = ["--iterations", "3", "--stop", "none", "--device", "cpu", "--gt", rgb, "--report", rep]
    assert run("denoise", rgb, "-o", out, "--restarts", 2, "--seed", 5, *opts) == 0
    printed = capsys.readouterr().out
    assert "returned the average of 2 fits: average of 2 fits: fit 1: iteration limit 3 reached" in printed
    assert "each fit: " in printed and "of fit " in printed
    r = json.loads(rep.read_text())
    assert r["stopped_at"] == -1 and r["iterations_run"] == 6 and len(r["history"]["loss"]) == 6
    fits = r["config"]["restarts"]["fits"]
    assert [f["seed"] for f in fits] == [5, 6] and [f["start"] for f in fits] == [0, 3]
    assert run("plot", rep, "-o", tmp_path / "curve.png") == 0
    assert Image.open(tmp_path / "curve.png").size[0] > 100


@pytest.mark.parametrize("bad", [["--restarts", "0"], ["--restarts", "2", "--checkpoint", "ck.pt"]])
def test_bad_restarts_fail_in_one_line_before_writing(rgb, tmp_path, capsys, bad, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.png"
    assert run("denoise", rgb, "-o", out, *bad, *FAST) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "restarts" in err.lower()
    assert not out.exists() and not (tmp_path / "ck.pt").exists()


def test_jpeg_quality_read_from_the_file_or_given_reaches_the_report(tmp_path, capsys):
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "q5.jpg", quality=5)
    _png(tmp_path / "p.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
    fast = [a for a in FAST if a != "--quiet"]
    for src, given, expected in (("q5.jpg", [], 5), ("q5.jpg", ["--quality", "30"], 30), ("p.png", [], None),
                                 ("p.png", ["--quality", "7"], 7)):
        rep = tmp_path / "r.json"
        assert run("jpeg", tmp_path / src, "-o", tmp_path / "o.png", "--force", "--report", rep, *given, *fast) == 0
        assert json.loads(rep.read_text())["config"].get("jpeg_quality") == expected, (src, given)
    for bad in ("0", "101", "x"):
        assert run("jpeg", tmp_path / "q5.jpg", "-o", tmp_path / "b.png", "--quality", bad, *FAST) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "quality" in err
    assert not (tmp_path / "b.png").exists()
