"""Checks against the evaluation data in ../shared/data (skipped with a message where it is absent)."""
import csv

import pytest
import torch

from neuralprior import load_image, psnr
from neuralprior.cli import _mask_from_zeros


def _anchor(shared_data, task, image, method):
    with open(shared_data / "anchors.csv") as f:
        for row in csv.DictReader(f):
            if (row["task"], row["image"], row["method"]) == (task, image, method):
                return float(row["value"])
    raise KeyError((task, image, method))


@pytest.mark.parametrize("name", ["F16", "kodim03", "peppers"])
def test_noisy_input_psnr_matches_the_published_protocol(shared_data, name):
    noisy, _ = load_image(shared_data / "denoise-sigma25" / f"{name}_noisy.png")
    gt, info = load_image(shared_data / "denoise-sigma25" / f"{name}_GT.png")
    assert info.mode == "RGB" and info.bit_depth == 8
    assert psnr(noisy, gt) == pytest.approx(_anchor(shared_data, "denoise-sigma25", name, "noisy input"), abs=0.01)


@pytest.mark.parametrize("name", ["barbara", "boat", "house"])
def test_inpainting_masks_are_half_known(shared_data, name):
    masked, info = load_image(shared_data / "inpaint-half" / f"{name}_masked.png")
    gt, _ = load_image(shared_data / "inpaint-half" / f"{name}_GT.png")
    mask = _mask_from_zeros(masked)
    assert info.mode == "L"
    assert 0.45 < float(mask.mean()) < 0.55
    assert torch.equal(masked * mask, gt * mask)          # known pixels are exact
