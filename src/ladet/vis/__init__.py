"""Pictures: detections (``ladet predict``) and label assignments (``ladet visualize-assign``)."""

from ladet.vis.assignment import AssignmentPanel, AssignmentPicture, draw_assignment_figure, draw_panel_image
from ladet.vis.detections import draw_detections

__all__ = [
    "AssignmentPanel",
    "AssignmentPicture",
    "draw_assignment_figure",
    "draw_detections",
    "draw_panel_image",
]
