"""The ladet metadata of an exported ONNX graph (pre-processing, classes, layout), read without torch."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DeployMetadata",
    "MetadataError",
    "METADATA_KEY",
    "METADATA_FORMAT",
    "read_metadata",
    "parse_metadata",
]

METADATA_KEY = "ladet"
METADATA_FORMAT = "ladet-detection-onnx/1"


class MetadataError(ValueError):
    """The ONNX file has no (or unusable) ladet metadata."""


@dataclass(frozen=True)
class DeployMetadata:
    """What a runtime needs to feed and read the graph.

    Attributes:
        max_size, short_size: keep-ratio resize into (max_size, short_size).
        mean, std: per-channel normalisation on the 0..255 RGB scale.
        size_divisor: pad right/bottom to a multiple of this (value ``pad_value``).
        max_detections: D, rows per image of the outputs.
        class_names, category_ids: one per contiguous label.
        raw: the whole JSON record.
    """

    max_size: int
    short_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size_divisor: int
    pad_value: float
    max_detections: int
    class_names: list[str]
    category_ids: list[int]
    raw: dict[str, Any]


def parse_metadata(text: str | None, source: str) -> DeployMetadata:
    """Parses the JSON stored under key ``ladet``.

    Raises:
        MetadataError: naming ``source`` when the key is missing, not JSON or incomplete.
    """
    if text is None:
        raise MetadataError(
            f"{source}: no ladet metadata (model metadata key {METADATA_KEY!r}); this file was not written "
            "by `ladet export --format onnx`"
        )
    try:
        record = json.loads(text)
        if record.get("format") != METADATA_FORMAT:
            raise MetadataError(
                f"{source}: ladet metadata format {record.get('format')!r}, this runtime reads {METADATA_FORMAT!r}"
            )
        preprocess = record["preprocess"]
        resize, normalize, pad = preprocess["resize"], preprocess["normalize"], preprocess["pad"]
        return DeployMetadata(
            max_size=int(resize["max_size"]),
            short_size=int(resize["short_size"]),
            mean=tuple(float(value) for value in normalize["mean"]),  # type: ignore[arg-type]
            std=tuple(float(value) for value in normalize["std"]),  # type: ignore[arg-type]
            size_divisor=int(pad["size_divisor"]),
            pad_value=float(pad["value"]),
            max_detections=int(record["max_detections"]),
            class_names=[str(name) for name in record["class_names"]],
            category_ids=[int(value) for value in record["category_ids"]],
            raw=record,
        )
    except MetadataError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise MetadataError(
            f"{source}: unreadable ladet metadata ({type(error).__name__}: {error})"
        ) from error


def read_metadata(path: str | os.PathLike[str]) -> DeployMetadata:
    """The ladet metadata of an ONNX file (through onnxruntime, without building a full session twice)."""
    import onnxruntime

    source = os.fspath(path)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"ONNX model not found: {source}")
    try:
        session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise MetadataError(f"{source}: onnxruntime cannot load it: {error}") from error
    return parse_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), source)
