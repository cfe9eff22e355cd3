"""``ladet export``: the evaluation (student) network alone, as weights or as a TorchScript trace.

The weights file is a ladet checkpoint holding only ``detector.*`` entries, ``"exported": True``
and a config whose ``model`` is the exported network's and whose method is the baseline, so
``Predictor.from_checkpoint`` and ``ladet test`` load it without any teacher or second network.
The TorchScript file traces the raw forward ``images [B, 3, H, W] -> (class_scores [B, N, C],
box_deltas [B, N, 4], iou_logits [B, N])`` (``iou_logits`` is zeros for heads without it);
decoding and NMS stay in Python (``PAADetector.predict``). The trace is specialised to the
example input size (the config's test size padded to ``size_divisor``, see
:func:`example_input_size`): feed it images padded to exactly that size.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ladet.checkpoint_io import CHECKPOINT_FORMAT, save_checkpoint_atomic
from ladet.config.loader import config_to_dict
from ladet.config.schema import Config, MethodConfig
from ladet.predictor import load_evaluation_detector


class RawForward(nn.Module):
    """Wraps a detector so its forward returns a tuple of tensors (traceable)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        outputs = self.detector(images)
        iou_logits = outputs.iou_logits
        if iou_logits is None:
            iou_logits = outputs.box_deltas.new_zeros(outputs.box_deltas.shape[:2])  # [B, N]
        return outputs.class_scores, outputs.box_deltas, iou_logits


def example_input_size(config: Config) -> tuple[int, int]:
    """(height, width) of a landscape test image padded to the size divisor."""
    divisor = config.data.size_divisor
    height = -(-config.data.short_size // divisor) * divisor
    width = -(-config.data.max_size // divisor) * divisor
    return height, width


def exported_config(config: Config, detector: nn.Module) -> Config:
    """``config`` with the exported network's model config and the baseline method."""
    result = copy.deepcopy(config)
    result.model = copy.deepcopy(getattr(detector, "config", config.model))
    result.model.backbone.weights = None
    result.method = MethodConfig()
    result.train.load_from = None
    return result


def export_detector(
    config: Config,
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    torchscript: bool = False,
) -> Path:
    """Writes the evaluation network of ``checkpoint`` to ``out`` (weights, or TorchScript).

    With ``torchscript`` the trace is checked once against the eager forward (same example
    input, outputs equal within 1e-4) before it is saved.
    """
    out = Path(out)
    detector = load_evaluation_detector(config, checkpoint, "cpu")
    if not torchscript:
        state = {
            "format": CHECKPOINT_FORMAT,
            "exported": True,
            "model": {f"detector.{key}": value for key, value in detector.state_dict().items()},
            "config": config_to_dict(exported_config(config, detector)),
        }
        save_checkpoint_atomic(state, out)
        return out
    wrapper = RawForward(detector).eval()
    height, width = example_input_size(config)
    example = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)  # torch.jit is deprecated in favour of export
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)  # level sizes become constants
        traced = torch.jit.trace(wrapper, example, check_trace=False)
        for eager, scripted in zip(wrapper(example), traced(example), strict=True):
            if not torch.allclose(eager, scripted, atol=1e-4, rtol=1e-4):
                raise RuntimeError("the TorchScript trace does not reproduce the eager forward")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        torch.jit.save(traced, str(temporary))
    os.replace(temporary, out)
    return out
