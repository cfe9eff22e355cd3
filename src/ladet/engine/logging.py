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

    def __init__(
        self,
        work_dir: str | Path,
        enabled: bool = True,
        tensorboard: bool = True,
        keep_until_step: int | None = None,
    ) -> None:
        """``keep_until_step``: None appends to what the folder holds; a step N first drops every
        record and TensorBoard event after step N (a resumed run continues at N: no duplicates,
        one event file); -1 starts both logs empty (a fresh run)."""
        self.enabled = enabled
        self.path = Path(work_dir) / "log.jsonl"
        self._writer: Any = None
        if enabled and keep_until_step is not None:
            truncate_log(self.path, keep_until_step)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                tensorboard_dir = Path(work_dir) / "tensorboard"
                earlier = (
                    sorted(tensorboard_dir.glob(EVENT_FILE_PATTERN)) if keep_until_step is not None else []
                )
                self._writer = SummaryWriter(log_dir=str(tensorboard_dir))
                if earlier:
                    carry_events_over(earlier, self._writer, keep_until_step)  # type: ignore[arg-type]
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


EVENT_FILE_PATTERN = "events.out.tfevents.*"


def truncate_log(path: Path, keep_until_step: int) -> int:
    """Rewrites ``log.jsonl`` keeping the records with ``step <= keep_until_step``; returns how
    many were dropped. A line that is not JSON (a write cut by a crash) is dropped too."""
    if not path.is_file():
        return 0
    kept: list[str] = []
    dropped = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line).get("step", 0)
        except (ValueError, AttributeError):
            dropped += bool(line.strip())
            continue
        if isinstance(step, int) and step <= keep_until_step:
            kept.append(line)
        else:
            dropped += 1
    temporary = path.with_name(f".{path.name}.rewrite")
    temporary.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    temporary.replace(path)
    return dropped


def carry_events_over(event_files: list[Path], writer: Any, keep_until_step: int) -> None:
    """Copies the summaries of ``event_files`` with ``step <= keep_until_step`` into ``writer``'s
    new event file, then deletes the old files: the folder keeps one event file, no duplicates."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    file_writer = writer._get_file_writer()
    for event_file in event_files:
        for record in RawEventFileLoader(str(event_file)).Load():  # the events as written, unconverted
            event = Event.FromString(record)
            if event.HasField("summary") and event.step <= keep_until_step:
                file_writer.add_event(event)
    writer.flush()
    for event_file in event_files:
        event_file.unlink()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Reads every record of a ``log.jsonl`` file."""
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
