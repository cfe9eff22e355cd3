"""Inference API: ``Predictor.from_checkpoint(config, checkpoint)(images) -> list[Detections]``.

Example::

    predictor = Predictor.from_checkpoint("configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml", "runs/demo/small/baseline_seed0/latest.pth")
    detections = predictor(["a.jpg", "b.png"])  # one Detections per image, original frame
    print(predictor.class_names[int(detections[0].labels[0])], detections[0].scores[0])

Only the evaluation network is built (``ladet.methods.build_evaluation_detector``): a LAD
student never needs its teacher, CoLAD uses ``method.colad.evaluate_network``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union, cast

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ladet.checkpoint_io import (
    CheckpointError,
    extract_network_state,
    load_checkpoint,
    load_state_dict_strict,
)
from ladet.config.schema import Config
from ladet.engine.precision import Precision, precision_policy
from ladet.structures import Detections

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, Tensor]  # noqa: UP007 - a runtime alias
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def resolve_config(config: str | os.PathLike[str] | Config, overrides: Sequence[str] = ()) -> Config:
    """A Config object from a YAML path (with overrides) or the object itself."""
    if isinstance(config, Config):
        return config
    from ladet.config.loader import load_config

    return load_config(os.fspath(config), overrides)


def load_evaluation_detector(
    config: Config, checkpoint: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> nn.Module:
    """Builds the evaluation network of ``config`` and loads its weights strictly, in eval mode.

    Accepts a training checkpoint of the method (the ``detector.`` or, for CoLAD, the
    ``second_detector.`` entries are used), a file written by ``ladet export`` (its ``detector.``
    entries), or a bare / mmdetection state dict.

    Raises:
        CheckpointError: unreadable file or weights of another architecture (keys listed).
    """
    from ladet.data.classes import resolve_classes
    from ladet.methods import build_evaluation_detector, evaluation_network_name

    resolve_classes(config)
    detector = build_evaluation_detector(config)
    loaded = load_checkpoint(checkpoint)
    network = "detector" if loaded.get("exported") else evaluation_network_name(config)
    state = extract_network_state(loaded, network=network, source=str(checkpoint))
    load_state_dict_strict(detector, state, source=str(checkpoint))
    return detector.to(device).eval()


def read_categories(config: Config) -> tuple[list[str], list[int]]:
    """Class names and dataset category ids of each label (``ladet.data.classes.resolve_classes``).

    Falls back to ``"class_<label>"`` and ids ``label + 1`` only when ``model.num_classes`` is set
    and the dataset cannot be read (a copied config without its data).
    """
    from ladet.data.classes import resolve_classes

    resolve_classes(config)
    num_classes = int(config.model.num_classes or 0)
    names = list(config.class_names) or [f"class_{label}" for label in range(num_classes)]
    ids = list(config.data.category_ids) or list(range(1, num_classes + 1))
    return names, ids


def dataset_image_ids(config: Config, paths: Sequence[Path]) -> list[int | str]:
    """Result id of each predicted image: the dataset's image id when the file is an image of
    ``data.val`` or ``data.train`` (readable), else its file name as given."""
    from ladet.data.loading import load_annotations, split_config

    ids: list[int | str] = [str(path) for path in paths]
    resolved = [path.resolve() for path in paths]
    for split in ("val", "train"):
        image_dir = split_config(config, split).image_dir
        if not image_dir or not any(Path(image_dir).resolve() in path.parents for path in resolved):
            continue
        try:
            annotations = load_annotations(config, split)
        except (OSError, ValueError):
            continue
        by_path = {(annotations.image_dir / r.file_name).resolve(): r.image_id for r in annotations.records}
        ids = [
            by_path.get(path, given) if isinstance(given, str) else given
            for path, given in zip(resolved, ids, strict=True)
        ]
    return ids


def expand_image_paths(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, folders replaced by their image files (sorted, non-recursive).

    Raises:
        FileNotFoundError: an input that does not exist, or a folder without images.
    """
    paths: list[Path] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise FileNotFoundError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(images)
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"input image not found: {path}")
    return paths


class Predictor:
    """Runs the evaluation detector on images given as paths, PIL images, arrays or tensors.

    Attributes:
        detector: the network (eval mode) on ``device``.
        config: the resolved config.
        class_names: name of each contiguous label (the dataset's, ``ladet.data.classes``).
        category_ids: dataset category id of each label (for result JSON files).
        precision: the autocast policy of the forward (``config.train.amp`` on ``device`` unless
            given); post-processing always runs in fp32.
    """

    def __init__(
        self,
        detector: nn.Module,
        config: Config,
        device: torch.device | str = "cpu",
        class_names: list[str] | None = None,
        category_ids: list[int] | None = None,
        batch_size: int = 1,
        precision: Precision | None = None,
    ) -> None:
        self.detector = detector.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        names, ids = read_categories(config)
        self.class_names = list(class_names or config.class_names or names)
        self.category_ids = list(category_ids or ids)
        self.batch_size = max(1, batch_size)
        self.precision = precision or precision_policy(config.train.amp, self.device)

    @classmethod
    def from_checkpoint(
        cls,
        config: str | os.PathLike[str] | Config,
        checkpoint: str | os.PathLike[str],
        device: torch.device | str = "cpu",
        overrides: Sequence[str] = (),
    ) -> Predictor:
        """Builds the evaluation network of ``config`` and loads ``checkpoint`` into it."""
        resolved = resolve_config(config, overrides)
        return cls(load_evaluation_detector(resolved, checkpoint, device), resolved, device)

    @torch.no_grad()
    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> list[Detections]:
        """One :class:`Detections` per image (original frame), in input order.

        A single image (path, PIL image, [H, W, 3] RGB array, [3, H, W] tensor on 0..255) or a
        list of them.
        """
        from ladet.data.collate import collate
        from ladet.data.transforms import prepare_image_for_inference

        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, Tensor)):
            images = [images]
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            items = [prepare_image_for_inference(image, self.config.data) for image in chunk]
            batch = collate(items, size_divisor=self.config.data.size_divisor).to(self.device)
            with self.precision.autocast():
                detections = cast(Any, self.detector).predict(batch)
            results.extend(Detections(d.boxes.float(), d.scores.float(), d.labels) for d in detections)
        return results

    def describe(self, detections: Detections, score_threshold: float = 0.0) -> list[dict[str, Any]]:
        """Readable records ``{"label", "class_name", "score", "box"}`` of one image's detections."""
        keep = detections.scores >= score_threshold
        return [
            {
                "label": int(label),
                "class_name": self.class_names[int(label)],
                "score": float(score),
                "box": box,
            }
            for box, score, label in zip(
                detections.boxes[keep].tolist(),
                detections.scores[keep].tolist(),
                detections.labels[keep].tolist(),
                strict=True,
            )
        ]


__all__ = ["CheckpointError", "Predictor", "expand_image_paths", "load_evaluation_detector", "resolve_config"]
