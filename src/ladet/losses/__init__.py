"""Losses: focal (logits / probabilities), focal-KL, the PAA detection loss and soft-label KD."""

from ladet.losses.detection import DetectionLoss
from ladet.losses.distillation import SoftLabelDistillationLoss
from ladet.losses.focal import focal_loss, probability_focal_loss, sigmoid_focal_loss
from ladet.losses.focal_kl import focal_kl_loss, focal_kl_loss_from_probabilities

__all__ = [
    "DetectionLoss",
    "SoftLabelDistillationLoss",
    "focal_kl_loss",
    "focal_kl_loss_from_probabilities",
    "focal_loss",
    "probability_focal_loss",
    "sigmoid_focal_loss",
]
