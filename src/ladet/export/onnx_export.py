"""``ladet export CONFIG --checkpoint CKPT --format onnx --out model.onnx``: the end-to-end ONNX graph.

The evaluation network of the checkpoint (a baseline / LAD / KD / SoLAD student, CoLAD's
``method.colad.evaluate_network``) wrapped in :class:`ladet.export.graph.DetectionGraph` is
exported with the torch ONNX exporter (``torch.onnx.export(..., dynamo=True)``, opset
:data:`ONNX_OPSET`) and dynamic shapes: batch ``B`` and ``H = size_divisor · h``,
``W = size_divisor · w`` for any h, w >= 1 (the padding rule of ``ladet.data.collate``).

Graph signature::

    images       float32 [B, 3, H, W]   normalised, padded right/bottom with 0
    image_sizes  int64   [B, 2]         (h, w) after resizing, before padding
 -> boxes        float32 [B, D, 4]      (x1, y1, x2, y2) in the resized frame
    scores       float32 [B, D]
    labels       int64   [B, D]         contiguous labels, -1 on padding rows
    num_detections int64 [B]            rows 0..num_detections-1 are detections

with D = ``model.test.max_per_image``. The pre-processing (resize, normalise, pad), the class
names and the graph layout are written as JSON into the model's metadata (key
:data:`METADATA_KEY`), which :mod:`ladet.deploy` reads. The written file is checked once with
ONNX Runtime against the PyTorch graph on the example batch before it replaces ``out``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ladet.config.schema import Config
from ladet.data.transforms import IMAGE_MEAN, IMAGE_STD
from ladet.deploy.metadata import METADATA_FORMAT, METADATA_KEY
from ladet.export.graph import DetectionGraph, UnsupportedExportError
from ladet.predictor import load_evaluation_detector, read_categories

__all__ = [
    "ONNX_OPSET",
    "METADATA_KEY",
    "METADATA_FORMAT",
    "export_onnx",
    "export_detector_onnx",
    "graph_metadata",
]

ONNX_OPSET = 18
INPUT_NAMES = ["images", "image_sizes"]
OUTPUT_NAMES = ["boxes", "scores", "labels", "num_detections"]
MAX_BATCH = 1024
MAX_BLOCKS = 512  # H, W up to size_divisor * 512 (16384 px at 32)


def graph_metadata(config: Config, detector: Any, opset: int = ONNX_OPSET) -> dict[str, Any]:
    """The JSON written into the ONNX file: pre-processing, classes, graph layout and test options."""
    model = detector.config
    class_names, category_ids = read_categories(config)  # the Predictor's names and ids
    test = model.test
    return {
        "format": METADATA_FORMAT,
        "opset": opset,
        "inputs": {"images": "float32 [B, 3, H, W]", "image_sizes": "int64 [B, 2] (h, w)"},
        "outputs": {
            "boxes": "float32 [B, D, 4] resized frame",
            "scores": "float32 [B, D]",
            "labels": "int64 [B, D], -1 on padding",
            "num_detections": "int64 [B]",
        },
        "max_detections": test.max_per_image,
        "preprocess": {
            "color": "RGB",
            "resize": {
                "max_size": config.data.max_size,
                "short_size": config.data.short_size,
                "rule": "scale = min(max_size / long, short_size / short); side = int(side * scale + 0.5)",
                "interpolation": "bilinear, half-pixel centres, no antialias, on float 0..255",
            },
            "normalize": {"mean": list(IMAGE_MEAN), "std": list(IMAGE_STD)},
            "pad": {"size_divisor": config.data.size_divisor, "value": 0.0, "where": "right/bottom"},
        },
        "postprocess": {
            "nms_pre": test.nms_pre,
            "score_threshold": test.score_threshold,
            "nms_iou_threshold": test.nms_iou_threshold,
            "max_per_image": test.max_per_image,
            "score_voting": test.score_voting,
            "score_voting_sigma": test.score_voting_sigma,
        },
        "model": {
            "backbone_depth": model.backbone.depth,
            "head": model.head.type,
            "iou_branch": model.head.iou_branch,
            "num_classes": model.num_classes,
        },
        "class_names": class_names,
        "category_ids": category_ids,
    }


def example_inputs(config: Config, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A traced example batch: B = 2 and sides whose every FPN level has >= 2 cells.

    ``torch.export`` specialises dimensions that are 0 or 1 in the example, so the example
    avoids them (batch 2, P7 at least 2 x 2, height != width).
    """
    divisor = config.data.size_divisor
    strides = config.model.anchors.strides
    smallest = 2 * max(strides) + divisor
    height = max(-(-config.data.short_size // divisor) * divisor, -(-smallest // divisor) * divisor)
    width = max(-(-config.data.max_size // divisor) * divisor, height + divisor)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, height, width, generator=generator)
    sizes = torch.tensor([[height, width], [height - divisor // 2, width - divisor]] * (batch_size // 2))
    return images, sizes[:batch_size]


class MissingOnnxExtraError(ValueError):
    """onnx, onnxscript or onnxruntime is not installed."""


def require_onnx_extra() -> None:
    """Raises :class:`MissingOnnxExtraError` naming the first missing package of the ``onnx`` extra."""
    for package in ("onnx", "onnxscript", "onnxruntime"):
        if importlib.util.find_spec(package) is None:
            raise MissingOnnxExtraError(
                f"ONNX export needs {package} (the onnx extra): pip install 'ladet[onnx]'"
            )


def export_onnx(
    config: Config,
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    opset: int = ONNX_OPSET,
    verify: bool = True,
) -> Path:
    """Exports the evaluation network of ``checkpoint`` end to end to ``out`` (atomic write).

    Raises:
        CheckpointError: the checkpoint lacks the evaluation network's weights.
        UnsupportedExportError: a test option the graph cannot express.
        MissingOnnxExtraError: onnx / onnxruntime / onnxscript are missing (``pip install ladet[onnx]``).
        RuntimeError: ONNX Runtime does not reproduce the PyTorch graph on the example batch.
    """
    require_onnx_extra()
    return export_detector_onnx(
        load_evaluation_detector(config, checkpoint, "cpu"), config, out, opset, verify
    )


def export_detector_onnx(
    detector: Any, config: Config, out: str | os.PathLike[str], opset: int = ONNX_OPSET, verify: bool = True
) -> Path:
    """Exports an already built evaluation ``detector`` (eval mode, CPU) to ``out``; see :func:`export_onnx`."""
    require_onnx_extra()
    import onnx
    from torch.export import Dim

    from ladet.export.nms import ONNX_TRANSLATIONS

    out = Path(out)
    graph = DetectionGraph(detector).eval()
    images, image_sizes = example_inputs(config)
    divisor = config.data.size_divisor
    batch = Dim("batch", min=1, max=MAX_BATCH)
    height_blocks = Dim("height_blocks", min=1, max=MAX_BLOCKS)
    width_blocks = Dim("width_blocks", min=1, max=MAX_BLOCKS)
    dynamic_shapes = {
        "images": {0: batch, 2: divisor * height_blocks, 3: divisor * width_blocks},
        "image_sizes": {0: batch},
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            (images, image_sizes),
            dynamo=True,
            opset_version=opset,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_shapes=dynamic_shapes,
            custom_translation_table=ONNX_TRANSLATIONS,
            verbose=False,
        )
        expected = [tensor.numpy() for tensor in graph(images, image_sizes)]
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    model = program.model_proto
    onnx.helper.set_model_props(
        model, {METADATA_KEY: json.dumps(graph_metadata(config, detector, opset), sort_keys=True)}
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.partial")
    onnx.save_model(model, str(temporary))
    try:
        if verify:
            _verify(temporary, images.numpy(), image_sizes.numpy(), expected)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, out)
    return out


def _verify(path: Path, images: np.ndarray, image_sizes: np.ndarray, expected: list[np.ndarray]) -> None:
    """ONNX Runtime on the example batch reproduces the PyTorch graph (matched detections)."""
    import onnxruntime

    from ladet.export.parity import compare_detections

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, labels, counts = session.run(None, {"images": images, "image_sizes": image_sizes})
    problems = []
    for image, (count, expected_count) in enumerate(zip(counts.tolist(), expected[3].tolist(), strict=True)):
        difference = compare_detections(
            labels[image, :count],
            scores[image, :count],
            boxes[image, :count],
            expected[2][image, :expected_count],
            expected[1][image, :expected_count],
            expected[0][image, :expected_count],
        )
        if not difference.within(score_tolerance=1e-4, box_tolerance=1e-2):
            problems.append(f"image {image}: {difference}")
    if problems:
        raise RuntimeError(
            f"{path}: ONNX Runtime does not reproduce the PyTorch graph: {'; '.join(problems)}"
        )


__all__ += ["UnsupportedExportError"]
