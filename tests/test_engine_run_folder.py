"""A run folder is one run's story: logs cut back on resume (log.jsonl and TensorBoard), stale
temporary files removed, epoch checkpoints pruned and hard-linked, weights-only exports,
strict JSON metrics."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator

import pytest
import torch
from engine_fakes import TinyDetector, fake_components, tiny_config

from ladet.checkpoint_io import load_checkpoint
from ladet.engine import NonFiniteLossError, train
from ladet.engine.logging import read_log
from ladet.evaluation.metrics_json import NO_GROUND_TRUTH, dumps_strict, metrics_to_json


@pytest.fixture(autouse=True)
def _single_thread_and_restored_determinism() -> Iterator[None]:
    torch.set_num_threads(1)
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


def _scalar_steps(tensorboard_dir, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tensorboard_dir))
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def _event_files(tensorboard_dir) -> list:
    return sorted(tensorboard_dir.glob("events.out.tfevents.*"))


def test_resume_cuts_log_and_tensorboard_back_to_the_resumed_step(tmp_path) -> None:
    config = tiny_config(epochs=2, checkpoint_every_iters=4)
    # 6 iterations per epoch; call 11 poisons the loss: logs reach step 10, latest.pth is step 8
    with pytest.raises(NonFiniteLossError):
        train(config, tmp_path, components=fake_components(nan_at_call=11))
    assert load_checkpoint(tmp_path / "latest.pth")["iteration"] == 8
    assert max(r["step"] for r in read_log(tmp_path / "log.jsonl")) == 10
    train(config, tmp_path, "auto", components=fake_components())
    records = read_log(tmp_path / "log.jsonl")
    train_steps = [r["step"] for r in records if r["type"] == "train"]
    assert train_steps == list(range(1, 13))  # every step once, in order
    assert [r["epoch"] for r in records if r["type"] == "eval"] == [1, 2]
    (event_file,) = _event_files(tmp_path / "tensorboard")  # one event file
    assert _scalar_steps(tmp_path / "tensorboard", "train/loss") == list(range(1, 13))
    assert event_file.is_file()


def test_a_fresh_run_in_a_used_folder_starts_with_empty_logs(tmp_path) -> None:
    train(tiny_config(epochs=1), tmp_path, components=fake_components())
    # --force: the earlier run's files go to previous_<time>/; the new logs hold this run only
    train(tiny_config(epochs=1), tmp_path, components=fake_components(), force=True)
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl") if r["type"] == "train"] == list(range(1, 7))
    assert len(_event_files(tmp_path / "tensorboard")) == 1
    assert _scalar_steps(tmp_path / "tensorboard", "train/loss") == list(range(1, 7))


def test_stale_temporary_files_are_removed_on_start(tmp_path) -> None:
    stale = [tmp_path / ".latest.pth.k2j4_x9a", tmp_path / ".student.pth.partial"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    mine = tmp_path / ".notes.txt"
    mine.write_text("keep")
    train(tiny_config(epochs=1), tmp_path, components=fake_components())
    assert not any(path.exists() for path in stale)
    assert mine.read_text() == "keep"


def test_keep_checkpoints_prunes_old_epochs_and_links_the_newest(tmp_path) -> None:
    train(tiny_config(epochs=4, keep_checkpoints=1), tmp_path / "one", components=fake_components())
    assert sorted(p.name for p in (tmp_path / "one").glob("*.pth")) == ["epoch_4.pth", "latest.pth"]
    # written once: epoch_4.pth and latest.pth are the same file (a hard link), not two copies
    assert os.stat(tmp_path / "one" / "epoch_4.pth").st_ino == os.stat(tmp_path / "one" / "latest.pth").st_ino
    train(tiny_config(epochs=3, keep_checkpoints=0), tmp_path / "none", components=fake_components())
    assert sorted(p.name for p in (tmp_path / "none").glob("*.pth")) == ["latest.pth"]
    train(tiny_config(epochs=3, keep_checkpoints=-1), tmp_path / "all", components=fake_components())
    assert len(list((tmp_path / "all").glob("epoch_*.pth"))) == 3


def test_export_weights_writes_best_and_final_without_optimizer_state(tmp_path) -> None:
    train(tiny_config(epochs=3, export_weights=True), tmp_path, components=fake_components())
    evaluations = [r for r in read_log(tmp_path / "log.jsonl") if r["type"] == "eval"]
    best_ap = max(r["AP"] for r in evaluations)
    final = load_checkpoint(tmp_path / "final_weights.pth")
    best = load_checkpoint(tmp_path / "best_weights.pth")
    for exported in (final, best):
        assert exported["exported"] is True and "optimizer" not in exported and "rng" not in exported
        assert set(exported["model"]) == {f"detector.{key}" for key in TinyDetector().state_dict()}
        assert exported["config"]["method"]["name"] == "baseline"
    assert final["epoch"] == 3 and final["AP"] == pytest.approx(evaluations[-1]["AP"])
    assert best["AP"] == pytest.approx(best_ap)
    assert best["epoch"] == next(r["epoch"] for r in evaluations if r["AP"] == best["AP"])
    assert (tmp_path / "final_weights.pth").stat().st_size < (tmp_path / "latest.pth").stat().st_size


def test_metrics_files_are_strict_json_with_units(tmp_path) -> None:
    train(tiny_config(epochs=1), tmp_path, components=fake_components())

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    document = json.loads((tmp_path / "metrics_epoch_1.json").read_text(), parse_constant=refuse)
    assert document["metrics"]["metric_units"] == "fraction"


def test_nan_becomes_null_with_a_reason() -> None:
    metrics = {
        "AP": 0.5,
        "APl": -1.0,
        "per_class_AP": {"ring": math.nan, "star": 0.25},
        "x": torch.tensor(2.0),
    }
    converted = metrics_to_json(metrics)
    assert converted["metric_units"] == "fraction" and converted["AP"] == 0.5 and converted["APl"] == -1.0
    assert converted["per_class_AP"] == {"ring": None, "star": 0.25} and converted["x"] == 2.0
    assert converted["null_reasons"] == {"per_class_AP.ring": NO_GROUND_TRUTH}
    assert "NaN" not in dumps_strict({"run": {"loss": math.inf}})
    assert json.loads(dumps_strict({"run": {"loss": math.inf}}))["null_reasons"] == {
        "run.loss": "not a finite number (inf)"
    }
    assert math.isnan(metrics["per_class_AP"]["ring"])  # the input is not modified


def test_screen_tables_show_percent_and_na() -> None:
    from ladet.engine.trainer import _side_by_side
    from ladet.evaluation.coco import METRIC_NAMES, format_table

    metrics = dict.fromkeys(METRIC_NAMES, 0.0004) | {
        "AP": 0.0421,
        "APl": -1.0,
        "per_class_AP": {"ring": math.nan},
    }
    lines = format_table(metrics).splitlines()
    assert lines[1].split()[:1] == ["4.21"] and lines[1].split()[5] == "n/a"
    assert lines[-1].split() == ["ring", "n/a"]
    table = _side_by_side({"AP": 0.0004, "AP50": 0.5}, {"AP": 0.075, "AP50": 0.129})
    assert table.splitlines()[1].split() == ["student", "0.04", "50.00"]  # percent, not 0.0004
    assert table.splitlines()[2].split() == ["teacher", "7.50", "12.90"]
