"""RNG state capture/restore and the resume-path rules."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ladet.checkpoint_io import CheckpointError, save_checkpoint_atomic
from ladet.engine.checkpointing import resolve_resume_path
from ladet.engine.distributed import capture_rng_states, restore_rng_states


def _draw() -> tuple[list[float], list[float], list[float]]:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path) -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    save_checkpoint_atomic({"rng": capture_rng_states()}, tmp_path / "state.pth")
    expected = _draw()
    _draw()  # move every generator on
    restore_rng_states(torch.load(tmp_path / "state.pth", weights_only=True)["rng"])
    assert _draw() == expected


def test_resume_path_rules(tmp_path) -> None:
    assert resolve_resume_path(None, tmp_path) is None
    assert resolve_resume_path("auto", tmp_path) is None  # nothing yet: fresh start
    (tmp_path / "latest.pth").write_bytes(b"")
    assert resolve_resume_path("auto", tmp_path) == tmp_path / "latest.pth"
    assert resolve_resume_path(tmp_path / "latest.pth", tmp_path) == tmp_path / "latest.pth"
    with pytest.raises(CheckpointError, match="elsewhere.pth"):
        resolve_resume_path(tmp_path / "elsewhere.pth", tmp_path)
