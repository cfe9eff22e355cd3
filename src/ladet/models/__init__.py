"""The PAA detector: backbone, FPN, anchors, box coder, heads, inference."""

from ladet.models.anchors import AnchorGenerator, AnchorGrid
from ladet.models.backbone import ResNetBackbone
from ladet.models.box_coder import DeltaBoxCoder
from ladet.models.detector import PAADetector, build_detector
from ladet.models.fpn import FPN
from ladet.models.heads import COPHead, DenseHead, IOPHead, PAAHead, build_head
from ladet.models.mmdet_compat import convert_mmdet_paa_state_dict
from ladet.models.outputs import HeadOutputs
from ladet.models.postprocess import postprocess_detections, score_voting

__all__ = [
    "AnchorGenerator",
    "AnchorGrid",
    "ResNetBackbone",
    "DeltaBoxCoder",
    "PAADetector",
    "build_detector",
    "FPN",
    "COPHead",
    "DenseHead",
    "IOPHead",
    "PAAHead",
    "build_head",
    "convert_mmdet_paa_state_dict",
    "HeadOutputs",
    "postprocess_detections",
    "score_voting",
]
