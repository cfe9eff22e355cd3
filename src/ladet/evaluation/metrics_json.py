"""Metrics as strict JSON: fractions under a documented unit, ``null`` (with a reason) for NaN.

Every metrics file ladet writes (``metrics.json`` of ``ladet test``, ``metrics_epoch_N.json``,
``teacher_metrics.json``, the demo's ``table2.json``) holds the COCO numbers as **fractions**
(0.404, as COCO reports them) and says so with ``"metric_units": "fraction"``; the screen shows
the same numbers in percent (40.4). COCO's ``-1`` (no ground truth in that size range) is kept.
A number that is not finite (a class with no ground truth among the evaluated images has no
AP: NaN) becomes ``null`` and its dotted key gets a reason under ``"null_reasons"``::

    {"metric_units": "fraction", "AP": 0.404, ..., "per_class_AP": {"ring": null},
     "null_reasons": {"per_class_AP.ring": "no ground truth of this class among the evaluated images"}}

Files are written with ``allow_nan=False``: a NaN can never reach them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRIC_UNITS_KEY = "metric_units"
METRIC_UNITS = "fraction"
NULL_REASONS_KEY = "null_reasons"
NO_GROUND_TRUTH = "no ground truth of this class among the evaluated images"


def _reason(dotted_key: str, value: float) -> str:
    if ".per_class_AP." in f".{dotted_key}" and math.isnan(value):
        return NO_GROUND_TRUTH
    return f"not a finite number ({value})"


def strict_json_value(value: Any, reasons: dict[str, str], dotted_key: str = "") -> Any:
    """A copy of ``value`` with tensors/numpy scalars as numbers and non-finite floats as None.

    Each replaced entry's dotted key is added to ``reasons`` with why it is null.
    """
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, RuntimeError):  # a tensor with several elements
            value = value.tolist()
    if isinstance(value, Mapping):
        prefix = f"{dotted_key}." if dotted_key else ""
        return {str(key): strict_json_value(item, reasons, f"{prefix}{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [
            strict_json_value(item, reasons, f"{dotted_key}[{index}]") for index, item in enumerate(value)
        ]
    if isinstance(value, float) and not math.isfinite(value):
        reasons[dotted_key] = _reason(dotted_key, value)
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def metrics_to_json(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` (fractions) with ``metric_units`` first and ``null_reasons`` when needed."""
    reasons: dict[str, str] = {}
    converted = strict_json_value(dict(metrics), reasons)
    converted.pop(METRIC_UNITS_KEY, None)
    converted.pop(NULL_REASONS_KEY, None)
    document: dict[str, Any] = {METRIC_UNITS_KEY: METRIC_UNITS, **converted}
    if reasons:
        document[NULL_REASONS_KEY] = reasons
    return document


def dumps_strict(value: Any) -> str:
    """Strict JSON text of any ladet document (nested metrics included), NaN-free."""
    reasons: dict[str, str] = {}
    converted = strict_json_value(value, reasons)
    if reasons and isinstance(converted, dict):
        converted.setdefault(NULL_REASONS_KEY, {}).update(reasons)
    return json.dumps(converted, indent=2, allow_nan=False)
