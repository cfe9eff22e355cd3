"""Class-wise NMS as one graph operator: ``ladet::class_wise_nms_mask`` (eager) = ONNX ``NonMaxSuppression``.

The operator takes fixed-shape inputs and returns a fixed-shape keep mask, so the surrounding
export graph has no data-dependent shapes:

* eager / CUDA: torchvision ``batched_nms`` over the (image, class) groups of the candidates
  scoring above the threshold (the same NMS ``postprocess_detections`` runs per image);
* ONNX: ``NonMaxSuppression(boxes, scores, max_per_class, iou_threshold, score_threshold)``
  followed by a ``ScatterND`` of its ``[M, 3]`` (image, class, box) triples into a zero mask.

Both suppress a box whose IoU with a kept box of the same class and image is > ``iou_threshold``
and drop scores <= ``score_threshold``. The ONNX side also stops after ``max_per_class`` boxes per
(image, class); the eager side keeps all. The caller keeps only the ``max_per_class`` best of an
image over all classes, which never needs more than ``max_per_class`` boxes of one class, so the
two agree after that step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms

__all__ = ["class_wise_nms_mask", "onnx_class_wise_nms_mask", "ONNX_TRANSLATIONS"]


@torch.library.custom_op("ladet::class_wise_nms_mask", mutates_args=())
def class_wise_nms_mask(
    boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float, max_per_class: int
) -> Tensor:
    """Greedy NMS per (image, class).

    Args:
        boxes: [B, K, 4] float32 (x1, y1, x2, y2) candidate boxes, shared by the classes.
        scores: [B, C, K] float32 score of every candidate for every class.
        iou_threshold: suppress IoU > this with a kept box of the same class.
        score_threshold: only scores > this take part.
        max_per_class: the ONNX side's per-(image, class) cap (unused in eager, see module doc).

    Returns:
        [B, C, K] bool, True for the (image, class, candidate) triples that NMS keeps.
    """
    batch_size, num_classes, _ = scores.shape
    image, label, candidate = (scores > score_threshold).nonzero(as_tuple=True)  # [M] each
    keep = batched_nms(
        boxes[image, candidate], scores[image, label, candidate], image * num_classes + label, iou_threshold
    )
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[image[keep], label[keep], candidate[keep]] = True
    return mask


@class_wise_nms_mask.register_fake
def _class_wise_nms_mask_fake(
    boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float, max_per_class: int
) -> Tensor:
    return torch.empty_like(scores, dtype=torch.bool)


def onnx_class_wise_nms_mask(
    boxes: Any, scores: Any, iou_threshold: float, score_threshold: float, max_per_class: int
) -> Any:
    """ONNX translation (onnxscript, traced at export time) of :func:`class_wise_nms_mask`."""
    import onnx
    from onnxscript import opset18

    op: Any = opset18  # onnxscript's stubs do not type traced values

    selected = op.NonMaxSuppression(
        boxes,
        scores,
        op.Constant(value_ints=[max_per_class]),
        op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[score_threshold]),
        center_point_box=0,
    )  # [M, 3] int64 (image, class, box)
    zeros = op.ConstantOfShape(op.Shape(scores))  # [B, C, K] float 0
    count = op.Slice(op.Shape(selected), op.Constant(value_ints=[0]), op.Constant(value_ints=[1]))  # [1]
    ones = op.ConstantOfShape(count, value=onnx.helper.make_tensor("one", onnx.TensorProto.FLOAT, [1], [1.0]))
    return op.Cast(op.ScatterND(zeros, selected, ones), to=onnx.TensorProto.BOOL)


ONNX_TRANSLATIONS: dict[Callable[..., Any], Callable[..., Any]] = {
    torch.ops.ladet.class_wise_nms_mask.default: onnx_class_wise_nms_mask
}
