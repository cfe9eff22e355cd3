"""Reading and writing checkpoint files, shared by the engine, teachers and the predictor.

A ladet checkpoint is a plain dict written with ``torch.save``:

    {"model": method.state_dict(),        # keys "detector.*" (and "second_detector.*" for CoLAD)
     "optimizer": ..., "scheduler": ..., "scaler": ..., "epoch": int, "iteration": int,
     "config": <resolved config as a plain dict>, "rng": ..., "sampler": ..., "format": "ladet-1"}

It is always loaded with ``torch.load(weights_only=True)``, so it may hold only tensors and
plain Python containers/scalars. Files are written atomically (temporary file + fsync + rename).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

CHECKPOINT_FORMAT = "ladet-1"


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not fit the model it is loaded into."""


def save_checkpoint_atomic(state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Writes ``state`` to ``path`` so that a crash never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    file_descriptor, temporary_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(file_descriptor, "wb") as handle:
            torch.save(dict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary_name, path)
    except BaseException:
        if os.path.exists(temporary_name):
            os.unlink(temporary_name)
        raise


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True`` and names the file in every error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the file name, in ladet's words
        raise CheckpointError(unreadable_checkpoint_message(path, error)) from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a dict")
    return checkpoint


def unreadable_checkpoint_message(path: Path, error: BaseException) -> str:
    """Why ``path`` could not be loaded, without torch's advice to load it with weights_only=False
    (which would let the file run code: ladet never does that)."""
    from ladet.file_kinds import describe_file_kind, is_torch_save_file

    if not is_torch_save_file(path):
        return (
            f"{path} is not a checkpoint: it is {describe_file_kind(path)}, not a file written by "
            "torch.save (give a ladet training checkpoint, a `ladet export` file or a state dict)"
        )
    text = str(error)
    if "weights_only" in text or "Unsupported global" in text or "WeightsUnpickler" in text:
        return (
            f"checkpoint {path} holds Python objects other than tensors and plain containers; ladet "
            "reads checkpoints with weights_only=True and never runs code from a file. Re-save it as "
            "a plain state dict: torch.save(model.state_dict(), path)"
        )
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"cannot read checkpoint {path} (damaged or truncated?): {first_line}"


def extract_network_state(
    checkpoint: Mapping[str, Any], network: str = "detector", source: str = "checkpoint"
) -> dict[str, Tensor]:
    """Returns the state dict of one detector stored in a checkpoint, prefix removed.

    Accepts (in this order): a ladet checkpoint (``checkpoint["model"]`` with ``"{network}."``
    prefixes), an mmdetection checkpoint (``checkpoint["state_dict"]``, converted by
    ``ladet.models.mmdet_compat``), or a bare detector state dict.

    Args:
        checkpoint: the loaded file.
        network: "detector" for the main network, "second_detector" for CoLAD's second one.
        source: a name for error messages (usually the file path).
    """
    if "model" in checkpoint and isinstance(checkpoint["model"], Mapping):
        state = checkpoint["model"]
        prefix = f"{network}."
        selected = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        if not selected:
            prefixes = sorted({key.split(".", 1)[0] for key in state})
            raise CheckpointError(
                f"{source}: no '{prefix}*' entries in checkpoint['model']; networks present: {prefixes}"
            )
        return selected
    if "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], Mapping):
        from ladet.models.mmdet_compat import convert_mmdet_paa_state_dict

        return convert_mmdet_paa_state_dict(dict(checkpoint["state_dict"]))
    if all(isinstance(value, Tensor) for value in checkpoint.values()):
        return dict(checkpoint)
    raise CheckpointError(f"{source}: not a ladet, mmdetection or bare state-dict checkpoint")


def load_state_dict_strict(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Loads ``state`` into ``module`` and refuses any mismatch, listing every one of them.

    Raises:
        CheckpointError: with the missing, unexpected and mis-shaped keys (shapes included).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match the model architecture:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = keys[:20] + ([f"... and {len(keys) - 20} more"] if len(keys) > 20 else [])
                lines.append(f"  {title} keys ({len(keys)}): " + ", ".join(shown))
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(dict(state), strict=True)
