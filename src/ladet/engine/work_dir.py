"""Work dirs that keep their history: a fresh run never writes over another run's files.

A fresh run (no ``--resume``) into a work dir holding another run's checkpoints or logs is
refused; with ``--force`` the old contents are moved aside into ``WORK_DIR/previous_<timestamp>/``
(never deleted).
"""

from __future__ import annotations

import time
from pathlib import Path

RUN_FILE_PATTERNS = ("*.pth", "log.jsonl", "metrics_epoch_*.json", "teacher_metrics.json", "tensorboard")
PREVIOUS_PREFIX = "previous_"


class WorkDirInUseError(ValueError):
    """A fresh run was pointed at a work dir that holds another run."""


def previous_run_files(work_dir: Path) -> list[Path]:
    """Checkpoints, logs, metrics and TensorBoard folders of an earlier run in ``work_dir``."""
    if not work_dir.is_dir():
        return []
    found = {path for pattern in RUN_FILE_PATTERNS for path in work_dir.glob(pattern)}
    return sorted(found)


def prepare_fresh_work_dir(work_dir: Path, force: bool, move: bool = True) -> Path | None:
    """Refuses (or with ``force`` moves aside) an earlier run's files before a fresh run.

    ``move=False`` (ranks other than 0) only refuses.

    Returns:
        The folder the old contents were moved to (None when nothing was moved).

    Raises:
        WorkDirInUseError: ``work_dir`` holds another run's files and ``force`` is False.
    """
    found = previous_run_files(work_dir)
    if not found:
        return None
    if not force:
        shown = ", ".join(path.name for path in found[:5]) + (", ..." if len(found) > 5 else "")
        raise WorkDirInUseError(
            f"work dir {work_dir} holds another run ({shown}): continue it with `--resume auto`, "
            "or start over with `--force` (moves the old contents into a previous_<time> sub-folder, deletes nothing)"
        )
    if not move:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = work_dir / f"{PREVIOUS_PREFIX}{stamp}"
    suffix = 1
    while target.exists():
        target = work_dir / f"{PREVIOUS_PREFIX}{stamp}-{suffix}"
        suffix += 1
    target.mkdir()
    for path in work_dir.iterdir():
        if path != target and not path.name.startswith(PREVIOUS_PREFIX):
            path.rename(target / path.name)
    return target
