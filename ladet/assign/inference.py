"""Run assignment internals under ``torch.inference_mode`` and hand back ordinary tensors.

The assignment is made of many small eager ops (a few microseconds each on CPU): inference mode
skips the autograd and version-counter bookkeeping of every op (~20% less dispatch time in the
EM loop). Inference tensors may not be modified in place or saved for backward outside inference
mode, so every tensor the wrapped function returns (also inside tuples and dataclasses) is cloned
outside it: callers get ordinary tensors, with the same values.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["inference_internals"]

_Function = TypeVar("_Function", bound=Callable[..., Any])


def _to_normal(value: Any) -> Any:
    """Clones the inference tensors in ``value`` (tensor, tuple, list or dataclass); the rest as is."""
    if isinstance(value, torch.Tensor):
        return value.clone() if value.is_inference() else value
    if isinstance(value, tuple):
        return (
            type(value)(*map(_to_normal, value))
            if hasattr(value, "_fields")
            else tuple(map(_to_normal, value))
        )
    if isinstance(value, list):
        return [_to_normal(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {field.name: _to_normal(getattr(value, field.name)) for field in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value


def inference_internals(function: _Function) -> _Function:
    """Decorator: ``function`` runs under ``torch.inference_mode()``; its result holds normal tensors.

    Inside an enclosing wrapped call (already in inference mode) nothing is cloned: the outermost
    wrapper does it once.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if torch.is_inference_mode_enabled():
            return function(*args, **kwargs)
        with torch.inference_mode():
            result = function(*args, **kwargs)
        return _to_normal(result)

    return wrapper  # type: ignore[return-value]
