"""Resuming a run on several processes: one decision, one checkpoint, or a stop naming the culprit.

Every rank reads the checkpoint from its own disk, and without a shared file system those disks
differ (only rank 0 writes checkpoints). So:

1. Rank 0 resolves ``--resume`` (``auto`` → its ``work_dir/latest.pth`` when present) and
   broadcasts its decision: the path, the SHA-256 of the file's content, its host.
2. Each rank finds its own copy: for a checkpoint inside rank 0's work directory the same name in
   its own work directory, else the same path. A rank whose copy is missing or holds other bytes
   (and, on a fresh start decided by rank 0, a rank that does see a ``latest.pth`` under ``auto``)
   is a failure.
3. The outcomes are gathered: if any rank failed, EVERY rank raises :class:`CheckpointError` with
   one line per failing rank (host, rank, path, reason). No rank starts fresh while another
   resumes, and none is left waiting in a collective.

Loading follows the same rule (:func:`restore_on_every_rank`): a rank that cannot load the agreed
file stops the whole job.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ladet.checkpoint_io import CheckpointError
from ladet.engine.checkpointing import TrainingPosition, resolve_resume_path, restore_training_state
from ladet.engine.distributed import DistributedContext, all_gather_objects, broadcast_object

__all__ = ["ResumeDecision", "agree_on_resume_path", "file_digest", "restore_on_every_rank"]

_LATEST = "latest.pth"


def file_digest(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file's content, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ResumeDecision:
    """What rank 0 resumes from (sent to every rank as plain values).

    Attributes:
        path: rank 0's checkpoint path, None for a fresh start.
        name_in_work_dir: the path relative to rank 0's work directory when it lies inside it
            (each rank then looks in its own work directory), else None (the same path everywhere).
        digest: SHA-256 of the file's content ("" for a fresh start).
        host: rank 0's host name.
        auto: the run was started with ``--resume auto``.
        error: rank 0's own error resolving ``--resume`` (re-raised on every rank), else None.
    """

    path: str | None
    name_in_work_dir: str | None
    digest: str
    host: str
    auto: bool
    error: str | None = None


def _decide(resume: str | Path | None, work_dir: Path) -> ResumeDecision:
    """Rank 0's decision (also the whole story for a single process)."""
    auto = str(resume) == "auto"
    host = socket.gethostname()
    try:
        path = resolve_resume_path(resume, work_dir)
    except CheckpointError as error:
        return ResumeDecision(None, None, "", host, auto, error=str(error))
    if path is None:
        return ResumeDecision(None, None, "", host, auto)
    try:
        name = str(path.resolve().relative_to(work_dir.resolve()))
    except ValueError:
        name = None
    return ResumeDecision(str(path), name, file_digest(path), host, auto)


def _local_problem(decision: ResumeDecision, work_dir: Path) -> tuple[Path | None, str | None]:
    """This rank's copy of the decided checkpoint, or why it cannot load the same one."""
    if decision.path is None:
        latest = work_dir / _LATEST
        if decision.auto and latest.is_file():
            return None, (
                f"sees {latest}, but rank 0 (host {decision.host}) found no {_LATEST} and starts fresh"
            )
        return None, None
    local = work_dir / decision.name_in_work_dir if decision.name_in_work_dir else Path(decision.path)
    if not local.is_file():
        return local, f"has no {local} (rank 0 on host {decision.host} resumes from {decision.path})"
    digest = file_digest(local)
    if digest != decision.digest:
        return local, (
            f"{local} has other content than rank 0's {decision.path} on host {decision.host} "
            f"(sha256 {digest[:12]}… vs {decision.digest[:12]}…)"
        )
    return local, None


def _raise_if_any_rank_failed(problem: str | None, context: DistributedContext, what: str) -> None:
    """Gathers every rank's problem (a collective); raises the same error on all ranks if any."""
    host = socket.gethostname()
    reports = all_gather_objects((context.rank, host, problem))
    failures = [f"rank {rank} on host {rank_host}: {text}" for rank, rank_host, text in reports if text]
    if failures:
        raise CheckpointError(
            f"{what}: the ranks cannot use the same checkpoint, stopping every rank:\n  "
            + "\n  ".join(failures)
            + "\nOnly rank 0 writes checkpoints: put the work directory on a file system every node "
            "shares, or copy the checkpoint to the same place on every node."
        )


def agree_on_resume_path(
    resume: str | Path | None, work_dir: Path, context: DistributedContext
) -> Path | None:
    """The checkpoint this rank resumes from, the same content on every rank (None: fresh start).

    A collective: every rank must call it.

    Raises:
        CheckpointError: on every rank, when rank 0 cannot resolve ``resume`` or when some rank's
            copy is missing or differs (one line per such rank: host, rank, path, reason).
    """
    decision = _decide(resume, work_dir) if context.is_main else None
    decision = broadcast_object(decision)
    assert isinstance(decision, ResumeDecision)
    if decision.error is not None:
        raise CheckpointError(decision.error)
    local, problem = (Path(decision.path) if decision.path else None), None
    if not context.is_main:
        local, problem = _local_problem(decision, work_dir)
    _raise_if_any_rank_failed(problem, context, f"--resume {resume}")
    return local


def restore_on_every_rank(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    context: DistributedContext,
) -> TrainingPosition:
    """:func:`restore_training_state` on every rank (each its own RNG states); a collective.

    Raises:
        CheckpointError: on every rank when any rank failed to load (host, rank, path, error).
    """
    position, problem = TrainingPosition(), None
    try:
        position = restore_training_state(path, model, optimizer, scaler, rank=context.rank)
    except (CheckpointError, RuntimeError, ValueError, KeyError) as error:
        problem = f"cannot load {path}: {error}"
        if not context.is_distributed:
            raise
    _raise_if_any_rank_failed(problem, context, f"resuming from {path}")
    return position
