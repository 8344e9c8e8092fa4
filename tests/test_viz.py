"""Figures and animations: files that open, frames that stay bounded, clear errors."""
from __future__ import annotations

import doctest

import pytest
import torch
from PIL import Image

import neuralprior
from neuralprior import networks, viz
from neuralprior.bench import classical_baseline
from neuralprior.viz import (FrameRecorder, check_animation_path, check_figure_path, comparison_panels,
                             plot_comparison, plot_curves, save_animation)


def test_save_animation_writes_a_looping_multi_frame_gif(tmp_path, rng):
    frames = [torch.rand(3, 20, 30, generator=rng) for _ in range(4)]
    path = save_animation(frames, tmp_path / "a.gif", fps=5, labels=[f"iteration {i}" for i in range(4)])
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 4
        assert im.info["loop"] == 0 and im.info["duration"] == 200
        assert im.size[1] > 20                                   # the label strip is above the frame
    assert [p.name for p in tmp_path.iterdir()] == ["a.gif"]     # no temporary file left


def test_save_animation_grayscale_and_uint8_frames(tmp_path):
    frames = [torch.full((1, 1, 8, 8), v, dtype=torch.uint8) for v in (0, 128, 255)]
    with Image.open(save_animation(frames, tmp_path / "g.gif")) as im:
        assert im.n_frames == 3 and im.size == (8, 8)


@pytest.mark.parametrize("kwargs, match", [
    (dict(frames=[], path="a.gif"), "at least one frame"),
    (dict(frames=[torch.rand(3, 8, 8)], path="a.mp4"), "use .gif"),
    (dict(frames=[torch.rand(3, 8, 8), torch.rand(3, 9, 8)], path="a.gif"), "same size"),
    (dict(frames=[torch.rand(3, 8, 8)], path="a.gif", labels=["a", "b"]), "2 labels for 1 frames"),
])
def test_save_animation_rejects(tmp_path, kwargs, match):
    kwargs["path"] = tmp_path / kwargs["path"]
    with pytest.raises(neuralprior.NeuralPriorError, match=match):
        save_animation(**kwargs)
    assert list(tmp_path.iterdir()) == []


class _State:
    """The fields of a FitState that the recorder reads."""

    def __init__(self, iteration, estimate, num_iter, stage=""):
        self.iteration, self.estimate, self.num_iter, self.stage = iteration, estimate, num_iter, stage


def test_recorder_downscales_large_frames_and_picks_about_fifty_by_default():
    rec = FrameRecorder(max_side=64)
    x = torch.rand(1, 3, 100, 200)
    for it in range(1000):
        rec(_State(it, x, 1000))
    assert rec.every == 20 and len(rec.frames) == 50
    assert rec.frames[0].shape == (3, 32, 64) and rec.frames[0].dtype == torch.uint8
    assert rec.labels[:2] == ["iteration 0", "iteration 20"]


def test_recorder_memory_stays_bounded_on_long_runs():
    rec = FrameRecorder(every=1, max_frames=10)
    for it in range(1000):
        rec(_State(it, torch.rand(1, 1, 4, 4), 1000))
    assert 5 <= len(rec.frames) <= 10 and rec.every > 1
    assert rec.labels[0] == "iteration 0"


def test_recorder_ends_on_the_last_and_the_returned_estimate(tmp_path):
    rec = FrameRecorder(every=3)
    net = networks.EncoderDecoder(width=8, skip_channels=2, in_channels=8)
    result = neuralprior.fit(torch.rand(1, 3, 16, 16), net=net, config=neuralprior.FitConfig(num_iter=5),
                             callback=rec, device="cpu")
    result.stopped_at = 1                                        # as if the stopping rule had kept iteration 1
    rec.finish(result)
    assert rec.labels == ["iteration 0", "iteration 3", "iteration 4", "returned: iteration 1"]
    with Image.open(rec.save(tmp_path / "run.gif")) as im:
        assert im.n_frames == 4


def test_recorder_tells_the_stretch_after_a_held_out_stop_from_the_fit_before_it(astronaut_crop):
    """The stretch on every known pixel restarts after the chosen iteration: its frames are labelled
    apart and the held-out fit's frames of the same numbers are kept."""
    mask = (torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    rec = FrameRecorder(every=2)
    r = neuralprior.inpaint(astronaut_crop * mask, mask, num_iter=12, device="cpu", seed=0, callback=rec)
    assert r.config["held_out"]["best_iteration"] == 11 and r.stopped_at == 14      # 12 held out, then 3 more
    rec.finish(r)
    assert rec.labels == [f"iteration {i}" for i in range(0, 12, 2)] + [
        "iteration 12 (stretch)", "iteration 14 (stretch)"]
    # the same numbers in both stages: the last stretch estimate is added though iteration 12 was recorded
    rec = FrameRecorder(every=12)
    for stage, its in (("", range(13)), ("stretch", range(12, 14))):
        for it in its:
            rec(_State(it, torch.rand(1, 1, 4, 4), 15, stage))
    rec.finish()
    assert rec.labels == ["iteration 0", "iteration 12", "iteration 12 (stretch)", "iteration 13 (stretch)"]


def test_viz_docstring_examples_run():
    assert doctest.testmod(viz).failed == 0


def test_plot_comparison_writes_a_png_with_mixed_sizes(tmp_path, astronaut_crop):
    small = astronaut_crop[..., ::4, ::4].contiguous()
    panels = [("input", small), ("output", astronaut_crop), ("gray", astronaut_crop.mean(1, keepdim=True))]
    path = plot_comparison(panels, tmp_path / "c.png", title="test")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100


def test_comparison_panels_label_psnr_against_the_truth(astronaut_crop):
    noisy = (astronaut_crop + 0.1 * torch.randn(astronaut_crop.shape, generator=torch.Generator().manual_seed(0)))
    noisy = noisy.clamp(0, 1)
    baseline = classical_baseline("denoise", noisy)
    panels = comparison_panels(noisy, astronaut_crop, truth=astronaut_crop, baseline=baseline)
    titles = [t for t, _ in panels]
    assert titles[0].startswith("input: ") and titles[0].endswith(" dB")
    assert titles[1] == "DIP: inf dB" and titles[2] == "ground truth"
    assert titles[3].startswith(f"{baseline[0]} (classical): ")
    assert neuralprior.psnr(baseline[1], astronaut_crop) > neuralprior.psnr(noisy, astronaut_crop)
    assert [t for t, _ in comparison_panels(noisy, noisy)] == ["input", "DIP"]      # no truth: no numbers


@pytest.mark.parametrize("task, kwargs, name, shape", [
    ("inpaint", dict(mask=torch.ones(1, 1, 64, 64).index_fill_(3, torch.arange(0, 64, 2), 0)), "biharmonic",
     (1, 3, 64, 64)),
    ("super-resolve", dict(factor=2), "bicubic", (1, 3, 128, 128)),
])
def test_classical_baseline_per_task(astronaut_crop, task, kwargs, name, shape):
    got, image = classical_baseline(task, astronaut_crop, **kwargs)
    assert got == name and tuple(image.shape) == shape
    assert classical_baseline("jpeg", astronaut_crop) is None


def test_plot_curves(tmp_path):
    path = plot_curves({"a": [1.0, 0.5, 0.2], "b": [1.0, 0.9, 0.8]}, tmp_path / "l.png", ylabel="loss", log=True,
                       marks={"stop": 1})
    with Image.open(path) as im:
        assert im.format == "PNG"


@pytest.mark.parametrize("check, name, match", [
    (check_figure_path, "f.bmp", "unknown figure format"),
    (check_figure_path, "missing/f.png", "does not exist"),
    (check_animation_path, "a.mp4", "unknown animation format"),
    (check_animation_path, "missing/a.gif", "does not exist"),
])
def test_output_path_checks(tmp_path, check, name, match):
    with pytest.raises(neuralprior.NeuralPriorError, match=match):
        check(tmp_path / name)
    assert check(tmp_path / ("ok.gif" if check is check_animation_path else "ok.pdf")).parent == tmp_path
