"""The CUDA self-check: it says so on a machine without CUDA, and its checks run on the CPU."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from ladet import selfcheck

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_script_without_cuda_says_so_and_exits_zero() -> None:
    completed = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "no CUDA device is present" in completed.stdout and "nothing checked" in completed.stdout


@pytest.mark.slow
def test_every_check_runs_on_the_cpu_at_a_small_size(capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    enabled = torch.are_deterministic_algorithms_enabled()
    try:
        status = selfcheck.main(
            ["--device", "cpu", "--height", "128", "--width", "160", "--student-depth", "18"]
            + ["--teacher-depth", "18", "--iterations", "1", "--policies", "false", "--gts", "2", "4"]
            + ["--channels", "32"]
        )
    finally:
        torch.use_deterministic_algorithms(enabled)
    lines = capsys.readouterr().out.splitlines()
    assert status == 0, lines
    names = [line.split()[0] for line in lines[1:-1]]
    assert names == ["deterministic", "amp-train", "lad-teacher", "host-syncs", "eval-predict", "nccl-2proc"]
    assert all(line.split()[1] == "PASS" for line in lines[1:-2]) and lines[-2].split()[1] == "SKIP"
    assert "max_voted_box_diff_px evaluate=0.00e+00 predict=0.00e+00" in lines[5]


def test_a_failing_check_is_reported_and_the_others_still_run(capsys: pytest.CaptureFixture[str]) -> None:
    def failing() -> str:
        raise selfcheck.CheckFailed("voted boxes moved")

    assert selfcheck._run("demo", failing) is False
    assert selfcheck._run("other", lambda: "fine") is True
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["demo", "FAIL"] and "voted boxes moved" in out[0]
    assert out[1].split()[:2] == ["other", "PASS"]
