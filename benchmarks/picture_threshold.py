"""Measurement: how many boxes a detection picture shows per image, against the objects present.

Runs a trained checkpoint on the first N val images and, for each score threshold, prints the
mean number of boxes drawn per image (with the per-image cap), the mean number of objects
present (ground truth), and the share of drawn boxes that match an object of the same class at
IoU >= 0.5 (how many of the drawn boxes are right). ``ladet.vis.detections`` takes its
``DEFAULT_SCORE_THRESHOLD`` / ``DEFAULT_MAX_DRAWN`` from this table. Prints e.g.::

    threshold=0.30 cap=20 drawn_per_image=7.9 objects_per_image=3.8 drawn_correct=0.31 images_at_cap=0.05

Run: ``.venv/bin/python benchmarks/picture_threshold.py CONFIG CHECKPOINT ANN_FILE IMAGE_DIR
[--images 60] [key=value ...]``
"""

from __future__ import annotations

import argparse

import torch
from torchvision.ops import box_iou

from ladet.data.coco import parse_coco_annotations
from ladet.predictor import Predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("ann_file")
    parser.add_argument("image_dir")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--caps", type=int, nargs="+", default=[100, 20, 10])
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6]
    )
    arguments, overrides = parser.parse_known_args()
    arguments.overrides = overrides
    torch.set_num_threads(1)
    predictor = Predictor.from_checkpoint(arguments.config, arguments.checkpoint, "cpu", arguments.overrides)
    records, _, _, _ = parse_coco_annotations(arguments.ann_file, train=False)
    per_image = []
    for record in records[: arguments.images]:
        detections = predictor(f"{arguments.image_dir}/{record.file_name}")[0]
        gt_boxes = torch.as_tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)
        gt_labels = torch.as_tensor(record.labels, dtype=torch.long).reshape(-1)
        iou = box_iou(detections.boxes, gt_boxes) if len(gt_boxes) else torch.zeros(len(detections.boxes), 0)
        same_class = detections.labels[:, None] == gt_labels[None, :]  # [D, G]
        correct = (
            ((iou >= 0.5) & same_class).any(dim=1)
            if len(gt_boxes)
            else torch.zeros(len(iou), dtype=torch.bool)
        )
        per_image.append((detections.scores, correct, len(gt_boxes)))
    objects = sum(count for _, _, count in per_image) / len(per_image)
    print(f"images={len(per_image)} objects_per_image={objects:.1f}")
    for cap in arguments.caps:
        for threshold in arguments.thresholds:
            drawn = correct_drawn = at_cap = 0
            for scores, correct, _ in per_image:  # scores are sorted, highest first
                keep = (scores >= threshold).nonzero().flatten()[:cap]
                drawn += len(keep)
                correct_drawn += int(correct[keep].sum())
                at_cap += len(keep) == cap
            print(
                f"threshold={threshold:.2f} cap={cap} drawn_per_image={drawn / len(per_image):.1f} "
                f"objects_per_image={objects:.1f} drawn_correct={correct_drawn / max(drawn, 1):.2f} "
                f"images_at_cap={at_cap / len(per_image):.2f}"
            )


if __name__ == "__main__":
    main()
