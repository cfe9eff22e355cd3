"""ladet: Label Assignment Distillation (LAD, SoLAD, CoLAD) and the PAA detector on torch + torchvision.

The small public API (imported lazily so that ``import ladet`` stays cheap)::

    from ladet import load_config, build_detector, build_method, train, Predictor

    config = load_config("configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml", ["train.epochs=1"])
    predictor = Predictor.from_checkpoint(config, "runs/demo/small/baseline_seed0/latest.pth")
    detections = predictor("photo.jpg")          # list of Detections (boxes, scores, labels)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "load_config": "ladet.config",
    "dump_config": "ladet.config",
    "Config": "ladet.config.schema",
    "build_detector": "ladet.models",
    "PAADetector": "ladet.models",
    "build_method": "ladet.methods",
    "PAAAssigner": "ladet.assign",
    "AssignResult": "ladet.assign.result",
    "train": "ladet.engine",
    "evaluate": "ladet.engine",
    "Predictor": "ladet.predictor",
    "Batch": "ladet.structures",
    "Detections": "ladet.structures",
    "make_builtin_dataset": "ladet.data.builtin",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ladet' has no attribute {name!r}")
