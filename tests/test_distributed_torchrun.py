"""A 2-process torchrun (gloo, CPU) run with the engine stand-ins: both ranks end with identical
weights (equal to the rank-0 checkpoint), the evaluation covers each validation image exactly
once, only rank 0 logs, and the lr is scaled to the total batch of both ranks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ladet.checkpoint_io import load_checkpoint
from ladet.engine.logging import read_log
from tests.support.torchrun import run_two_processes

FAKES = Path(__file__).with_name("engine_fakes.py")


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_gloo_run_keeps_ranks_identical_and_evaluates_every_image_once(tmp_path: Path) -> None:
    run_two_processes([str(FAKES), str(tmp_path), "--images-per-gpu", "2"], timeout=240)
    # one report file per rank (their stdout lines may interleave)
    reports = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("report_rank*.json"))]
    assert sorted(report["rank"] for report in reports) == [0, 1]
    for report in reports:  # the metrics are broadcast to every rank
        assert report["metrics"]["num_images"] == 5
        assert report["metrics"]["num_duplicate_images"] == 0
        assert report["metrics"]["evaluated"] == 5
    rank0 = torch.load(tmp_path / "weights_rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "weights_rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    checkpoint = load_checkpoint(tmp_path / "latest.pth")
    # 12 images / (2 per GPU x 2 GPUs) = 3 iterations per epoch; lr scaled to the total batch of 4
    assert checkpoint["iteration"] == 6
    # each rank's generators are stored (seeded seed + rank, so they differ)
    assert len(checkpoint["rng_per_rank"]) == 2
    assert not torch.equal(checkpoint["rng_per_rank"][0]["torch"], checkpoint["rng_per_rank"][1]["torch"])
    assert torch.equal(checkpoint["rng"]["torch"], checkpoint["rng_per_rank"][0]["torch"])
    for key in rank0:
        assert torch.equal(checkpoint["model"][key], rank0[key]), key
    train_records = [r for r in read_log(tmp_path / "log.jsonl") if r["type"] == "train"]
    assert len(train_records) == 6, "only rank 0 writes the log"
    assert train_records[-1]["lr"] == pytest.approx(0.01 * 4 / 16 * 0.1)


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_module_entry_point_trains_the_real_pipeline_on_two_processes(tmp_path: Path) -> None:
    """`torchrun -m ladet train`: 4 images / (2 per GPU × 2 ranks) = 1 step per epoch; the 2 val
    images are split over the ranks and evaluated exactly once."""
    from cli_pipeline import write_tiny_config

    from ladet.data import make_builtin_dataset

    make_builtin_dataset(tmp_path / "data", seed=0, num_train=4, num_val=2, image_size=(96, 128))
    config = write_tiny_config(tmp_path, tmp_path / "data")
    run_two_processes(
        [
            "-m",
            "ladet",
            "train",
            str(config),
            "--work-dir",
            str(tmp_path / "run"),
            "--deterministic",
            "train.eval_interval=0",
        ],
        timeout=300,
    )
    checkpoint = load_checkpoint(tmp_path / "run" / "latest.pth")
    assert checkpoint["iteration"] == 2 and checkpoint["epoch"] == 2
    report = json.loads((tmp_path / "run" / "metrics_epoch_2.json").read_text())
    assert report["metrics"]["num_images"] == 2 and report["metrics"]["num_duplicate_images"] == 0
    assert not (tmp_path / "run" / "metrics_epoch_1.json").exists()  # eval_interval 0: only at the end
    train_records = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r["type"] == "train"]
    assert len(train_records) == 2
    assert train_records[-1]["lr"] == pytest.approx(0.01 * 4 / 16 * 0.1 * (1 - 0.5 * 0.999))
