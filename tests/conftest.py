"""Shared fixtures for the library tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng() -> torch.Generator:
    """A seeded CPU generator: every test that draws random numbers gets the same ones."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def _astronaut_crop() -> torch.Tensor:
    from skimage import data

    img = data.astronaut()[100:164, 180:244]           # 64x64 of the face: edges, texture and flat skin
    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


@pytest.fixture
def astronaut_crop(_astronaut_crop) -> torch.Tensor:
    """A (1, 3, 64, 64) float32 image in [0, 1] (a fresh copy per test)."""
    return _astronaut_crop.clone()


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder ``../shared/data`` next to the repository, or skip."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"../shared/data not found: expected the shared data folder at {path}")
    return path
