"""``ladet export``: the evaluation (student) network as weights, a TorchScript trace or an ONNX graph.

* :func:`export_detector` (``torch_formats``): weights file or TorchScript trace of the raw head;
* :func:`export_onnx` (``onnx_export``): the end-to-end graph of :mod:`ladet.export.graph` (needs
  the ``onnx`` extra: ``pip install ladet[onnx]``; imported lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ladet.export.torch_formats import RawForward, example_input_size, export_detector, exported_config

__all__ = ["RawForward", "example_input_size", "export_detector", "export_onnx", "exported_config"]


def export_onnx(*arguments: Any, **keywords: Any) -> Path:
    """See :func:`ladet.export.onnx_export.export_onnx`."""
    from ladet.export.onnx_export import export_onnx as export

    return export(*arguments, **keywords)
