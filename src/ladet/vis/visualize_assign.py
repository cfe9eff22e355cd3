"""``ladet visualize-assign``: run a trained method on images and draw its label assignments.

For each image: the GT boxes from the annotation file (matched by file name), the positives the
method trains with (the teacher's assignment for LAD / SoLAD / KD, the shared one for CoLAD),
beside the positives the student would assign itself, and for CoLAD which network's costs each
(GT, level) used. A baseline method (no teacher) gets its self-assignment alone.

The method provides ``label_assignments(batch) -> LabelAssignments`` (``ladet.methods.base``):
the assignment it trains with, the student's self-assignment, the anchor grid and, for CoLAD, the
pre-assignment and which network's costs each pre-positive used. Other methods' pre-assignment
(for the per-GT candidate counts) comes from the method's own assigner.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ladet.assign.max_iou import PreAssignment
from ladet.assign.result import AssignResult
from ladet.checkpoint_io import (
    CheckpointError,
    extract_network_state,
    load_checkpoint,
    load_state_dict_strict,
)
from ladet.config.schema import Config
from ladet.data.coco import ImageRecord, parse_coco_annotations
from ladet.data.collate import collate
from ladet.data.transforms import prepare_image_for_inference
from ladet.methods import build_method
from ladet.methods.base import LabelAssignments, TrainingMethod
from ladet.models.anchors import AnchorGrid
from ladet.vis.assignment import (
    AssignmentPanel,
    AssignmentPicture,
    anchor_network_choice,
    draw_assignment_figure,
    network_choice_per_gt_level,
)

logger = logging.getLogger(__name__)

TRAINABLE_NETWORKS = ("detector", "second_detector")


def load_ground_truth(ann_file: str | Path) -> tuple[dict[str, ImageRecord], list[str]]:
    """Reads a COCO annotation file: records by file name (and by base name) and class names."""
    records, _, class_names, _ = parse_coco_annotations(str(ann_file), train=False)
    by_name: dict[str, ImageRecord] = {}
    for record in records:
        by_name.setdefault(record.file_name, record)
        by_name.setdefault(Path(record.file_name).name, record)
    return by_name, class_names


def load_method_weights(method: torch.nn.Module, checkpoint: str | Path) -> list[str]:
    """Loads every trainable network of ``method`` (``detector``, CoLAD's ``second_detector``).

    The teacher is not touched: ``build_method`` loads it from the config's teacher reference.
    Accepts a ladet checkpoint of the method, or (for the ``detector`` only) a bare/mmdet one.

    Returns:
        The names of the networks loaded.
    """
    state = load_checkpoint(checkpoint)
    loaded: list[str] = []
    for name in TRAINABLE_NETWORKS:
        network = getattr(method, name, None)
        if not isinstance(network, torch.nn.Module):
            continue
        try:
            weights = extract_network_state(state, network=name, source=str(checkpoint))
        except CheckpointError:
            if name == "detector":
                raise
            logger.warning("%s holds no '%s' weights: drawing with its initial weights", checkpoint, name)
            continue
        load_state_dict_strict(network, weights, source=f"{checkpoint} [{name}]")
        loaded.append(name)
    return loaded


def _level_names(grid: AnchorGrid) -> list[str]:
    names = []
    for stride in grid.strides:
        exponent = int(stride).bit_length() - 1
        names.append(f"P{exponent}" if 1 << exponent == int(stride) else f"s{stride}")
    return names


def _panel(title: str, result: AssignResult, image: int) -> AssignmentPanel:
    return AssignmentPanel(
        title=title,
        positive_mask=result.positive_mask[image].cpu(),
        positive_gt_index=result.positive_gt_index[image].cpu(),
        pre_positive_mask=result.pre_positive_mask[image].cpu(),
    )


def _titles(method_name: str) -> tuple[str, str]:
    if method_name == "colad":
        return "shared CoLAD assignment (trains both)", "network 1 self-assignment"
    return "teacher assignment (trains the student)", "student self-assignment"


def picture_from_label_assignments(
    assignments: LabelAssignments,
    image: Image.Image,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    method_name: str,
    pre_assignment: PreAssignment | None = None,
    image_position: int = 0,
    note: str | None = None,
) -> AssignmentPicture:
    """Builds the picture data of one image from a method's ``label_assignments`` output.

    Args:
        assignments: ``method.label_assignments(batch)``.
        image: the image already resized to the network-input frame.
        gt_boxes: [G, 4] its GT boxes (resized frame); gt_labels: [G].
        method_name: ``config.method.name``; "baseline" draws the self-assignment alone.
        pre_assignment: the batch's IoU pre-assignment when ``assignments`` holds none (for the
            per-GT candidate counts).
        image_position: the image's position in the batch.
        note: a line printed under the panels.
    """
    grid = assignments.anchor_grid
    training = assignments.training_assignment
    pre = assignments.pre_assignment or pre_assignment
    if method_name == "baseline":
        panels = [_panel("self-assignment (used for training)", training, image_position)]
    else:
        training_title, self_title = _titles(method_name)
        panels = [
            _panel(training_title, training, image_position),
            _panel(self_title, assignments.student_assignment, image_position),
        ]
    level_names = _level_names(grid)
    num_gts = int(gt_boxes.shape[0])
    network_choice = anchor_choice = None
    if assignments.uses_second is not None and pre is not None:
        uses_second = assignments.uses_second.cpu()
        network_choice = network_choice_per_gt_level(
            uses_second,
            pre.image_index.cpu(),
            pre.gt_local.cpu(),
            pre.level.cpu(),
            image_position,
            num_gts,
            len(level_names),
        )
        anchor_choice = anchor_network_choice(
            uses_second, pre.image_index.cpu(), pre.anchor_index.cpu(), image_position, grid.num_anchors
        )
    return AssignmentPicture(
        image=image,
        gt_boxes=gt_boxes.cpu(),
        gt_labels=gt_labels.cpu(),
        anchors=grid.anchors.cpu(),
        level_index=grid.level_index.cpu(),
        level_names=level_names,
        panels=panels,
        pre_positive_gt_index=pre.gt_index[image_position].cpu() if pre is not None else None,
        network_choice=network_choice,
        anchor_network_choice=anchor_choice,
        note=note,
    )


def visualize_assignments(
    config: Config,
    checkpoint: str,
    image_paths: list[str],
    out_dir: str,
    annotations: str | None = None,
    *,
    device: str | None = None,
    display_size: int = 640,
) -> list[Path]:
    """Draws, for each image, the assignment the method trains with beside the student's own.

    Args:
        config: the method's config (its teacher is loaded from ``config.method.teacher``).
        checkpoint: a ladet checkpoint of the method (or of the detector alone for a baseline).
        image_paths: images to draw; GT boxes come from the annotation file entry whose
            ``file_name`` (or its base name) equals the image's file name. Images without one
            are drawn with no GT and a note.
        out_dir: PNGs are written here as ``<image stem>_assign.png``.
        annotations: a COCO JSON to take GT boxes from (default ``config.data.val.ann_file``).
        device: "cpu" / "cuda" (default: CUDA when available).
        display_size: longer side of each panel's image in pixels.

    Returns:
        The written PNG paths, in the order of ``image_paths``.
    """
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ann_file = annotations or config.data.val.ann_file
    records: dict[str, ImageRecord] = {}
    class_names = list(config.class_names)
    if annotations is not None or (ann_file and Path(ann_file).is_file()):
        records, file_class_names = load_ground_truth(ann_file)
        class_names = class_names or file_class_names
    else:
        logger.warning("annotation file %r not found: images are drawn without GT", ann_file)
    method: TrainingMethod = build_method(config, target)
    load_method_weights(method, checkpoint)
    method.to(target).eval()
    output = Path(out_dir)
    output.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for image_path in image_paths:
        item = prepare_image_for_inference(image_path, config.data)
        record = records.get(Path(image_path).name)
        note = None
        if record is not None:
            scale_x, scale_y = item["scale_factor"]
            scale = torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=torch.float32)
            item["boxes"] = torch.as_tensor(record.boxes, dtype=torch.float32).reshape(-1, 4) * scale
            item["labels"] = torch.as_tensor(record.labels, dtype=torch.long).reshape(-1)
            item["image_id"] = record.image_id
        else:
            note = f"no annotation for {Path(image_path).name} in {ann_file}: no GT boxes, so no positives"
        batch = collate([item], config.data.size_divisor).to(target)
        with torch.no_grad():
            assignments = method.label_assignments(batch)
        pre = assignments.pre_assignment
        if pre is None:
            with torch.no_grad():
                pre = method.assigner.pre_assign(
                    assignments.anchor_grid, assignments.valid_mask, batch.gt_boxes, batch.gt_labels
                )
        height, width = item["image_size"]
        with Image.open(image_path) as opened:
            resized = opened.convert("RGB").resize((int(width), int(height)), Image.Resampling.BILINEAR)
        picture = picture_from_label_assignments(
            assignments, resized, batch.gt_boxes[0], batch.gt_labels[0], config.method.name, pre, 0, note
        )
        path = output / f"{Path(image_path).stem}_assign.png"
        draw_assignment_figure(picture, class_names, display_size).save(path)
        written.append(path)
    return written
