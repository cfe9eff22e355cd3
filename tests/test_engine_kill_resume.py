"""A training process killed with SIGKILL resumes from latest.pth and ends with the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from engine_fakes import fake_components, tiny_config

from ladet.checkpoint_io import load_checkpoint
from ladet.engine import train

FAKES = Path(__file__).with_name("engine_fakes.py")


def _environment() -> dict[str, str]:
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(name, None)
    return environment


def _run(work_dir: Path, *arguments: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(FAKES), str(work_dir), *arguments],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.mark.slow
def test_sigkill_then_resume_auto_matches_uninterrupted_run(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(FAKES), str(killed), "--checkpoint-every-iters", "1", "--delay", "0.25"],
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        latest = killed / "latest.pth"
        while time.monotonic() < deadline:
            if latest.is_file() and load_checkpoint(latest)["iteration"] >= 3:
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("latest.pth did not reach iteration 3 in time")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    reached = load_checkpoint(killed / "latest.pth")["iteration"]
    assert 3 <= reached < 12, "killed before the end of training"
    _run(killed, "--checkpoint-every-iters", "1", "--resume", "auto")
    enabled = torch.are_deterministic_algorithms_enabled()
    try:  # the uninterrupted reference run, in this process
        train(tiny_config(), tmp_path / "full", components=fake_components())
    finally:
        torch.use_deterministic_algorithms(enabled)
    resumed = load_checkpoint(killed / "latest.pth")
    uninterrupted = load_checkpoint(tmp_path / "full" / "latest.pth")
    assert resumed["iteration"] == uninterrupted["iteration"] == 12
    for key, value in uninterrupted["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
