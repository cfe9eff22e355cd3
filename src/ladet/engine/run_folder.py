"""What a run folder keeps: stale temporary files removed, epoch checkpoints pruned, weights-only files.

* :func:`remove_stale_temporary_files`: a process killed while writing a checkpoint leaves a
  ``.latest.pth.XXXXXXXX`` temporary file (``save_checkpoint_atomic``); a new start removes them.
* :func:`save_checkpoints`: writes a training state once and gives it its other names as hard
  links (``epoch_12.pth`` and ``latest.pth`` share their bytes; a later ``latest.pth`` is a new
  file, the link stays intact). Copies instead where the file system has no hard links.
* :func:`prune_epoch_checkpoints`: keeps the newest ``train.keep_checkpoints`` ``epoch_N.pth``
  files (``latest.pth`` is always kept; a negative value keeps all).
* :class:`WeightsExporter` (``train.export_weights: true``): ``best_weights.pth`` at each
  evaluation that improves AP and ``final_weights.pth`` at the end, weights only (no optimizer
  state), in the format of ``ladet export`` (``ladet test``/``predict`` and teachers read them).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from ladet.checkpoint_io import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint_atomic

_TEMPORARY = re.compile(r"\..+\.pth\.(\w{6,}|partial)")
_EPOCH = re.compile(r"epoch_(\d+)\.pth")
BEST_WEIGHTS = "best_weights.pth"
FINAL_WEIGHTS = "final_weights.pth"


def remove_stale_temporary_files(work_dir: Path) -> list[Path]:
    """Deletes ``.NAME.pth.XXXXXXXX`` files left by an interrupted atomic write; returns them."""
    if not work_dir.is_dir():
        return []
    stale = [path for path in work_dir.iterdir() if path.is_file() and _TEMPORARY.fullmatch(path.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_checkpoints(work_dir: Path, state: dict[str, Any], names: list[str]) -> None:
    """Writes ``state`` as ``names[0]`` (atomically) and the other names as links to it."""
    first = work_dir / names[0]
    save_checkpoint_atomic(state, first)
    for name in names[1:]:
        target = work_dir / name
        temporary = work_dir / f".{name}.linking"
        temporary.unlink(missing_ok=True)
        try:
            os.link(first, temporary)
        except OSError:
            shutil.copyfile(first, temporary)
        os.replace(temporary, target)


def prune_epoch_checkpoints(work_dir: Path, keep: int) -> list[Path]:
    """Deletes all but the ``keep`` newest ``epoch_N.pth`` (by N); returns the deleted files."""
    if keep < 0:
        return []
    epochs = sorted(
        (int(match.group(1)), path)
        for path in work_dir.glob("epoch_*.pth")
        if (match := _EPOCH.fullmatch(path.name))
    )
    doomed = [path for _, path in epochs[: max(0, len(epochs) - keep)]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def weights_only_state(detector: Any, config: Any, metrics: dict[str, Any], epoch: int) -> dict[str, Any]:
    """The ``ladet export`` format of ``detector``: weights, the exported config, AP and epoch."""
    from ladet.config.loader import config_to_dict
    from ladet.export import exported_config

    return {
        "format": CHECKPOINT_FORMAT,
        "exported": True,
        "model": {f"detector.{key}": value for key, value in detector.state_dict().items()},
        "config": config_to_dict(exported_config(config, detector)),
        "epoch": epoch,
        "AP": float(metrics.get("AP", float("nan"))),
    }


class WeightsExporter:
    """Writes ``best_weights.pth`` (best AP so far, also across a resume) and ``final_weights.pth``."""

    def __init__(self, work_dir: Path, config: Any) -> None:
        self.work_dir = work_dir
        self.config = config
        self.best_ap = float("-inf")
        best = work_dir / BEST_WEIGHTS
        if best.is_file():  # resumed: the best file of the earlier part of the run
            self.best_ap = float(load_checkpoint(best).get("AP", float("-inf")))

    def after_evaluation(self, detector: Any, metrics: dict[str, Any], epoch: int, last: bool) -> list[Path]:
        """Writes the files due after evaluating ``epoch`` (1-based); returns them."""
        written: list[Path] = []
        state = weights_only_state(detector, self.config, metrics, epoch)
        ap = float(metrics.get("AP", float("nan")))
        if ap == ap and ap > self.best_ap:  # not NaN, better
            self.best_ap = ap
            save_checkpoint_atomic(state, self.work_dir / BEST_WEIGHTS)
            written.append(self.work_dir / BEST_WEIGHTS)
        if last:
            save_checkpoint_atomic(state, self.work_dir / FINAL_WEIGHTS)
            written.append(self.work_dir / FINAL_WEIGHTS)
        return written
