"""Run logs: a JSON-lines file (``work_dir/log.jsonl``) and TensorBoard scalars, written on rank 0."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _plain_number(value: Any) -> Any:
    """Turns tensors/numpy scalars into floats; keeps NaN/inf readable in JSON ("nan", "inf")."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    """Appends records to ``log.jsonl`` and mirrors numeric entries to TensorBoard.

    Every record gets ``"type"`` (e.g. "train", "eval", "teacher_eval") and ``"time"``.
    A logger with ``enabled=False`` (ranks other than 0) does nothing.
    """

    def __init__(self, work_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(work_dir) / "log.jsonl"
        self._writer: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(Path(work_dir) / "tensorboard"))
            except ImportError:  # tensorboard is a declared dependency; keep logging without it
                self._writer = None

    def log(self, record_type: str, step: int, values: Mapping[str, Any]) -> None:
        """Writes one record; numeric values also go to TensorBoard as ``{record_type}/{key}``."""
        if not self.enabled:
            return
        record = {"type": record_type, "step": step, "time": time.time()}
        record.update({key: _plain_number(value) for key, value in values.items()})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                number = _plain_number(value)
                if isinstance(number, (int, float)) and not isinstance(number, bool):
                    self._writer.add_scalar(f"{record_type}/{key}", number, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Reads every record of a ``log.jsonl`` file."""
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
