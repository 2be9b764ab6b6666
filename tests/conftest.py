"""Tests read corpora from ../shared/data (beside the repository) and cache into a per-session directory."""

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("MECHLAB_DATA", str(SHARED_DATA))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    os.environ["MECHLAB_CACHE"] = str(tmp_path_factory.mktemp("mechlab-cache"))
    yield


@pytest.fixture
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"tests need the shared corpora at {SHARED_DATA}"
    return SHARED_DATA
