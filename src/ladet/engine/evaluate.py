"""The evaluation loop: detections of every rank → COCO metrics (printed as the AP table)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, Protocol, cast

import torch
from torch import nn

from ladet.engine.distributed import all_gather_objects, broadcast_object
from ladet.engine.precision import Precision
from ladet.engine.progress import progress_bar
from ladet.structures import Batch, Detections


class Evaluator(Protocol):
    """What :func:`evaluate` needs from an evaluator (``ladet.evaluation.coco.CocoEvaluator``)."""

    def add(self, image_ids: list[int], detections: list[Detections]) -> None: ...

    def gather(self) -> None: ...

    def summarize(self) -> dict[str, Any]: ...


class DetectionCollector:
    """An :class:`Evaluator` that keeps every image's detections and computes no metric.

    For checks that compare detections themselves (the self-check, the precision tests).
    ``detections`` holds them in the order :func:`evaluate` produced them.
    """

    def __init__(self) -> None:
        self.detections: list[Detections] = []

    def add(self, image_ids: list[int], detections: list[Detections]) -> None:
        self.detections.extend(detections)

    def gather(self) -> None:
        """Single-process use only: nothing to gather."""

    def summarize(self) -> dict[str, Any]:
        return {}


@torch.no_grad()
def evaluate(
    detector: nn.Module,
    loader: Iterable[Batch],
    evaluator: Evaluator,
    device: torch.device | str = "cpu",
    is_main: bool = True,
    print_table: bool = True,
    title: str = "",
    precision: Precision | None = None,
) -> dict[str, Any]:
    """Runs ``detector.predict`` over ``loader`` and returns the COCO metrics on every rank.

    The detector is put in eval mode (and restored to its previous mode afterwards); its forward
    runs under ``precision`` (the ``train.amp`` policy; None: fp32), its post-processing always
    in fp32 (``models/postprocess.py``). Detections of all ranks are gathered by the evaluator. The returned dict
    also holds ``num_images`` (distinct images evaluated over all ranks) and
    ``num_duplicate_images`` (images seen more than once, e.g. sampler padding).
    """
    device = torch.device(device)
    was_training = detector.training
    detector.eval()
    seen_image_ids: list[int] = []
    progress = progress_bar(
        total=images_in(loader), desc=f"evaluating {title}".strip(), disable=not is_main, unit="img"
    )
    try:
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            with (precision or Precision()).autocast():
                detections = cast(Any, detector).predict(batch)
            detections = [
                Detections(d.boxes.float().cpu(), d.scores.float().cpu(), d.labels.cpu()) for d in detections
            ]
            evaluator.add(list(batch.image_ids), detections)
            seen_image_ids.extend(int(image_id) for image_id in batch.image_ids)
            progress.update(len(batch.image_ids))
    finally:
        progress.close()
        detector.train(was_training)
    evaluator.gather()
    all_image_ids = [image_id for ids in all_gather_objects(seen_image_ids) for image_id in ids]
    metrics: dict[str, Any] = {}
    if is_main:
        metrics = dict(evaluator.summarize())
        metrics["num_images"] = len(set(all_image_ids))
        metrics["num_duplicate_images"] = len(all_image_ids) - len(set(all_image_ids))
        if print_table:
            print(_format_metrics(metrics, title), file=sys.stdout, flush=True)
    return broadcast_object(metrics)


def images_in(loader: Iterable[Batch]) -> int | None:
    """Images this rank's ``loader`` yields (its sampler's length), None when unknown."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    sampler = getattr(batch_sampler, "sampler", None)
    for candidate in (sampler, getattr(loader, "dataset", None)):
        try:
            return len(cast(Any, candidate))
        except TypeError:
            continue
    return None


def _format_metrics(metrics: dict[str, Any], title: str) -> str:
    """The evaluation module's AP table (falls back to ``key=value`` pairs)."""
    try:
        from ladet.evaluation.coco import format_table
    except ImportError:
        body = " ".join(f"{key}={value:.4f}" for key, value in metrics.items() if isinstance(value, float))
    else:
        body = format_table(metrics)
    return f"{title}\n{body}" if title else body
