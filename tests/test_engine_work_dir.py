"""Work dirs keep their history: a fresh run into another run's work dir is refused; ``--force``
moves the old files aside (never deletes them)."""

from __future__ import annotations

import pytest
from engine_fakes import fake_components, tiny_config

from ladet.engine import train
from ladet.engine.work_dir import WorkDirInUseError, prepare_fresh_work_dir


def test_fresh_run_into_a_used_work_dir_is_refused_and_force_moves_it_aside(tmp_path) -> None:
    """On main the second fresh run overwrote config.yaml and appended to log.jsonl."""
    work_dir = tmp_path / "run"
    train(tiny_config(epochs=1), work_dir, components=fake_components())
    log_before = (work_dir / "log.jsonl").read_bytes()
    first_files = sorted(path.name for path in work_dir.iterdir())
    with pytest.raises(WorkDirInUseError, match=r"--resume auto.*--force"):
        train(tiny_config(epochs=1), work_dir, components=fake_components())
    assert (work_dir / "log.jsonl").read_bytes() == log_before  # untouched
    train(tiny_config(epochs=1), work_dir, components=fake_components(), force=True)
    moved = [path for path in work_dir.iterdir() if path.name.startswith("previous_")]
    assert len(moved) == 1
    assert sorted(path.name for path in moved[0].iterdir()) == first_files
    assert (moved[0] / "log.jsonl").read_bytes() == log_before
    assert (work_dir / "latest.pth").is_file() and (work_dir / "log.jsonl").read_bytes() != log_before
    # resuming is not a fresh run: allowed without --force
    train(tiny_config(epochs=2), work_dir, "auto", components=fake_components())


def test_a_work_dir_with_only_unrelated_files_is_used_as_is(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert prepare_fresh_work_dir(tmp_path, force=False) is None
    (tmp_path / "epoch_3.pth").write_bytes(b"x")
    with pytest.raises(WorkDirInUseError, match="epoch_3.pth"):
        prepare_fresh_work_dir(tmp_path, force=False)
    target = prepare_fresh_work_dir(tmp_path, force=True)
    assert target is not None and (target / "epoch_3.pth").read_bytes() == b"x"
    assert (target / "notes.txt").read_text() == "mine"
