"""A PyTorch-free runtime for graphs written by ``ladet export --format onnx``.

Needs only numpy, Pillow and onnxruntime (``pip install ladet[onnx]``); importing this package
never imports torch. Example::

    from ladet.deploy import OnnxPredictor

    predictor = OnnxPredictor("model.onnx")
    detections = predictor("image.jpg")[0]  # boxes [D, 4] in the original image frame
    print(predictor.class_names[detections.labels[0]], detections.scores[0], detections.boxes[0])
"""

from ladet.deploy.metadata import DeployMetadata, MetadataError, read_metadata
from ladet.deploy.predictor import ArrayDetections, OnnxPredictor
from ladet.deploy.preprocess import PreparedBatch, load_rgb_image, prepare_batch

__all__ = [
    "ArrayDetections",
    "DeployMetadata",
    "MetadataError",
    "OnnxPredictor",
    "PreparedBatch",
    "load_rgb_image",
    "prepare_batch",
    "read_metadata",
]
