"""Training checkpoints: what they hold, where resuming starts, and weight-only initialisation.

A training checkpoint (see ``ladet.checkpoint_io`` for the file format) stores the position as the
NEXT batch to run: ``epoch`` (0-based epoch in progress or about to start), ``iteration_in_epoch``
(batches of that epoch already done) and ``iteration`` (global optimiser steps done).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ladet.checkpoint_io import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    extract_network_state,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint_atomic,
)
from ladet.engine.distributed import capture_rng_states, restore_rng_states


@dataclass
class TrainingPosition:
    """Where training continues: epoch (0-based), batches done in it, global iterations done."""

    epoch: int = 0
    iteration_in_epoch: int = 0
    global_iteration: int = 0


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def build_training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    position: TrainingPosition,
    config_dict: dict[str, Any],
    rng_states_per_rank: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything an exact resume needs, as tensors and plain containers.

    ``rng_states_per_rank``: every rank's generator states (index = rank); ``"rng"`` holds rank
    0's (this process's when not given).
    """
    rng_states = rng_states_per_rank or [capture_rng_states()]
    return {
        "format": CHECKPOINT_FORMAT,
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"epoch": position.epoch, "iteration": position.global_iteration},
        "scaler": scaler.state_dict(),
        "epoch": position.epoch,
        "iteration": position.global_iteration,
        "iteration_in_epoch": position.iteration_in_epoch,
        "sampler": {"epoch": position.epoch, "start_batch": position.iteration_in_epoch},
        "rng": rng_states[0],
        "rng_per_rank": rng_states,
        "config": config_dict,
    }


def save_training_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic write (callers only call this on rank 0)."""
    save_checkpoint_atomic(state, path)


def resolve_resume_path(resume: str | Path | None, work_dir: Path) -> Path | None:
    """``None`` → fresh start; ``"auto"`` → ``work_dir/latest.pth`` if present; else the given file."""
    if resume is None or resume == "":
        return None
    if str(resume) == "auto":
        latest = work_dir / "latest.pth"
        return latest if latest.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"--resume: checkpoint not found: {path}")
    return path


def restore_training_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    restore_rng: bool = True,
    rank: int = 0,
) -> TrainingPosition:
    """Loads model, optimiser, scaler and (optionally) RNG states; returns the position to resume at.

    Each rank restores its own RNG states when the checkpoint has them for that rank (same world
    size), else rank 0's.

    Raises:
        CheckpointError: unreadable file, not a training checkpoint, or another architecture
            (the message lists missing / unexpected / mis-shaped keys).
    """
    checkpoint = load_checkpoint(path)
    required = ("model", "optimizer", "epoch", "iteration")
    absent = [key for key in required if key not in checkpoint]
    if absent:
        raise CheckpointError(f"{path} is not a ladet training checkpoint (missing entries: {absent})")
    load_state_dict_strict(unwrap_model(model), checkpoint["model"], source=str(path))
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: optimizer state does not fit this model: {error}") from error
    if checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    per_rank = checkpoint.get("rng_per_rank") or []
    if restore_rng and rank < len(per_rank):
        restore_rng_states(per_rank[rank])
    elif restore_rng and "rng" in checkpoint:
        restore_rng_states(checkpoint["rng"])
    return TrainingPosition(
        epoch=int(checkpoint["epoch"]),
        iteration_in_epoch=int(checkpoint.get("iteration_in_epoch", 0)),
        global_iteration=int(checkpoint["iteration"]),
    )


def load_initial_weights(model: nn.Module, path: str | Path) -> None:
    """``train.load_from``: initialise weights only (no optimiser, no position).

    A ladet checkpoint with the same keys as the training method initialises all of it; otherwise
    its ``detector`` (or a bare / mmdetection state dict) initialises the main ``detector``.
    """
    checkpoint = load_checkpoint(path)
    target = unwrap_model(model)
    if "model" in checkpoint and set(checkpoint["model"]) == set(target.state_dict()):
        load_state_dict_strict(target, checkpoint["model"], source=str(path))
        return
    detector = getattr(target, "detector", target)
    state = extract_network_state(checkpoint, network="detector", source=str(path))
    load_state_dict_strict(detector, state, source=str(path))
