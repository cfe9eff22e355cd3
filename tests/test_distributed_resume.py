"""Multi-node resume cannot diverge: rank 0 decides, every rank must hold the same bytes.

A 2-process gloo torchrun (``distributed_resume_worker.py``) whose ranks see different work
directories, as nodes without a shared file system do. Before, ``--resume auto`` let each rank
decide on its own disk: rank 0 resumed while rank 1 silently started fresh.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.torchrun import run_two_processes

WORKER = Path(__file__).with_name("distributed_resume_worker.py")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, str | None]]:
    root = tmp_path_factory.mktemp("resume")
    # the old per-rank decision hung here (rank 1 trained from scratch): hence the timeout
    run_two_processes([str(WORKER), str(root)], timeout=150)
    return {rank: json.loads((root / f"result_rank{rank}.json").read_text()) for rank in (0, 1)}


@pytest.mark.distributed
@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (
            "missing",
            r"rank 1 on host {host}: has no .*missing/rank1/latest\.pth \(rank 0 on host {host} resumes from .*missing/rank0/latest\.pth\)",
        ),
        (
            "different",
            r"rank 1 on host {host}: .*different/rank1/latest\.pth has other content than rank 0's .*different/rank0/latest\.pth .*\(sha256 ",
        ),
        (
            "fresh_on_rank0",
            r"rank 1 on host {host}: sees .*fresh_on_rank0/rank1/latest\.pth, but rank 0 \(host {host}\) found no latest\.pth and starts fresh",
        ),
    ],
)
def test_a_rank_without_the_same_checkpoint_stops_every_rank(
    results: dict[int, dict[str, str | None]], scenario: str, expected: str
) -> None:
    import re

    host = re.escape(str(results[0]["host"]))
    for rank in (0, 1):  # the same error on both ranks: nobody trains, nobody waits
        message = results[rank][scenario]
        assert message is not None, f"rank {rank} went on in scenario {scenario}"
        assert re.search(expected.format(host=host), message), message
        assert "stopping every rank" in message and "rank 0 on host" not in message.split("\n")[1][:14]


@pytest.mark.distributed
def test_identical_copies_resume_every_rank_exactly(results: dict[int, dict[str, str | None]]) -> None:
    """Weights, optimiser, schedule, sampler position and each rank's RNG states restored: the
    resumed run ends with the uninterrupted run's weights on both ranks. Only rank 0's disk holds
    ``teacher_metrics.json``: every rank takes rank 0's (before, rank 1 evaluated the teacher
    alone and the job hung)."""
    for rank in (0, 1):
        assert results[rank]["copies"] is None
        assert results[rank]["copies_equal_reference"] == "True"


def test_single_process_decision_is_rank_zeros(tmp_path: Path) -> None:
    import torch

    from ladet.checkpoint_io import CheckpointError, save_checkpoint_atomic
    from ladet.engine.distributed import DistributedContext
    from ladet.engine.resume import agree_on_resume_path, file_digest

    context = DistributedContext()
    assert agree_on_resume_path(None, tmp_path, context) is None
    assert agree_on_resume_path("auto", tmp_path, context) is None
    save_checkpoint_atomic({"weights": torch.arange(3)}, tmp_path / "latest.pth")
    assert agree_on_resume_path("auto", tmp_path, context) == tmp_path / "latest.pth"
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nowhere.pth"):
        agree_on_resume_path(tmp_path / "nowhere.pth", tmp_path, context)
    import hashlib

    expected = hashlib.sha256((tmp_path / "latest.pth").read_bytes()).hexdigest()
    assert file_digest(tmp_path / "latest.pth", chunk_bytes=7) == expected
