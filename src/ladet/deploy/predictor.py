"""``OnnxPredictor("model.onnx")(images)``: detections in the original image frame, without torch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ladet.deploy.metadata import METADATA_KEY, DeployMetadata, MetadataError, parse_metadata
from ladet.deploy.preprocess import ImageInput, PreparedBatch, prepare_batch

__all__ = ["ArrayDetections", "OnnxPredictor"]


@dataclass
class ArrayDetections:
    """Detections of one image in its original frame (numpy).

    Attributes:
        boxes: [D, 4] float32 (x1, y1, x2, y2).
        scores: [D] float32, decreasing.
        labels: [D] int64 contiguous labels.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


class OnnxPredictor:
    """Runs an exported ladet graph with ONNX Runtime.

    Args:
        model_path: a file written by ``ladet export --format onnx``.
        num_threads: ONNX Runtime intra-op threads (None: its default, all cores).
        batch_size: images per graph call.
        providers: ONNX Runtime execution providers (default CPU).

    Raises:
        FileNotFoundError: no such file.
        MetadataError: the file cannot be loaded or has no ladet metadata.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        num_threads: int | None = None,
        batch_size: int = 1,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        import onnxruntime

        source = os.fspath(model_path)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"ONNX model not found: {source}")
        options = onnxruntime.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(source, options, providers=list(providers))
        except Exception as error:  # onnxruntime raises its own exception types
            raise MetadataError(f"{source}: onnxruntime cannot load it: {error}") from error
        custom = self.session.get_modelmeta().custom_metadata_map
        self.metadata: DeployMetadata = parse_metadata(custom.get(METADATA_KEY), source)
        self.class_names = list(self.metadata.class_names)
        self.category_ids = list(self.metadata.category_ids)
        self.batch_size = max(1, batch_size)

    def run_batch(self, batch: PreparedBatch) -> list[ArrayDetections]:
        """Runs the graph on a prepared batch; boxes divided back to each original frame."""
        boxes, scores, labels, counts = self.session.run(
            None, {"images": batch.images, "image_sizes": batch.image_sizes}
        )
        results: list[ArrayDetections] = []
        for position, count in enumerate(counts.tolist()):
            scale_x, scale_y = batch.scale_factors[position]
            scale = np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
            results.append(
                ArrayDetections(
                    boxes=(boxes[position, :count] / scale).astype(np.float32),
                    scores=scores[position, :count].astype(np.float32),
                    labels=labels[position, :count].astype(np.int64),
                )
            )
        return results

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> list[ArrayDetections]:
        """One :class:`ArrayDetections` per image, in input order.

        ``images``: one image or a list (paths, PIL images, [H, W, 3] RGB arrays on 0..255).
        """
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            images = [images]
        results: list[ArrayDetections] = []
        for start in range(0, len(images), self.batch_size):
            results.extend(
                self.run_batch(prepare_batch(images[start : start + self.batch_size], self.metadata))
            )
        return results

    def describe(self, detections: ArrayDetections, score_threshold: float = 0.0) -> list[dict[str, Any]]:
        """Readable records ``{"label", "class_name", "score", "box"}`` of one image's detections."""
        keep = detections.scores >= score_threshold
        return [
            {
                "label": int(label),
                "class_name": self.class_names[int(label)],
                "score": float(score),
                "box": [float(value) for value in box],
            }
            for box, score, label in zip(
                detections.boxes[keep], detections.scores[keep], detections.labels[keep], strict=True
            )
        ]
