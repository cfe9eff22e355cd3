"""Key mapping between mmdetection PAA checkpoints and :class:`PAADetector` (docs/algorithms.md §10).

| mmdet key                                    | ladet key                                |
|----------------------------------------------|------------------------------------------|
| backbone.*                                   | backbone.* (torchvision ResNet names)    |
| neck.lateral_convs.{i}.conv.{weight,bias}    | neck.lateral_convs.{i}.{weight,bias}     |
| neck.fpn_convs.{0,1,2}.conv.*                | neck.output_convs.{0,1,2}.*              |
| neck.fpn_convs.{3,4}.conv.*  (P6, P7)        | neck.extra_convs.{0,1}.*                 |
| bbox_head.{cls,reg}_convs.{i}.conv.weight    | head.{cls,reg}_convs.{i}.conv.weight     |
| bbox_head.{cls,reg}_convs.{i}.gn.*           | head.{cls,reg}_convs.{i}.norm.*          |
| bbox_head.atss_cls.*                         | head.class_predictor.*                   |
| bbox_head.atss_reg.*                         | head.box_predictor.*                     |
| bbox_head.atss_centerness.*  (IoU branch)    | head.iou_predictor.*                     |
| bbox_head.scales.{l}.scale                   | head.scales.{l}.scale                    |
"""

from __future__ import annotations

import re

from torch import Tensor

__all__ = ["convert_mmdet_paa_state_dict", "MMDET_TO_LADET_RULES"]

NUM_FPN_INPUTS = 3  # C3, C4, C5: mmdet fpn_convs.{0,1,2} are outputs, .{3,4} the extra levels
NUM_FPN_EXTRA_LEVELS = 2  # P6, P7

# (mmdet pattern, ladet pattern); "{i}" stands for an integer index, "{rest}" for a key tail.
MMDET_TO_LADET_RULES: list[tuple[str, str]] = [
    ("backbone.{rest}", "backbone.{rest}"),
    ("neck.lateral_convs.{i}.conv.{rest}", "neck.lateral_convs.{i}.{rest}"),
    *[
        (f"neck.fpn_convs.{level}.conv.{{rest}}", f"neck.output_convs.{level}.{{rest}}")
        for level in range(NUM_FPN_INPUTS)
    ],
    *[
        (f"neck.fpn_convs.{NUM_FPN_INPUTS + extra}.conv.{{rest}}", f"neck.extra_convs.{extra}.{{rest}}")
        for extra in range(NUM_FPN_EXTRA_LEVELS)
    ],
    ("bbox_head.cls_convs.{i}.conv.{rest}", "head.cls_convs.{i}.conv.{rest}"),
    ("bbox_head.cls_convs.{i}.gn.{rest}", "head.cls_convs.{i}.norm.{rest}"),
    ("bbox_head.reg_convs.{i}.conv.{rest}", "head.reg_convs.{i}.conv.{rest}"),
    ("bbox_head.reg_convs.{i}.gn.{rest}", "head.reg_convs.{i}.norm.{rest}"),
    ("bbox_head.atss_cls.{rest}", "head.class_predictor.{rest}"),
    ("bbox_head.atss_reg.{rest}", "head.box_predictor.{rest}"),
    ("bbox_head.atss_centerness.{rest}", "head.iou_predictor.{rest}"),
    ("bbox_head.scales.{i}.scale", "head.scales.{i}.scale"),
]


def _to_regex(pattern: str) -> re.Pattern[str]:
    escaped = re.escape(pattern)
    escaped = escaped.replace(re.escape("{i}"), r"(?P<i>\d+)")
    escaped = escaped.replace(re.escape("{rest}"), r"(?P<rest>.+)")
    return re.compile(f"^{escaped}$")


_FORWARD_RULES = [(_to_regex(source), target) for source, target in MMDET_TO_LADET_RULES]


def _unwrap(state: dict) -> dict[str, Tensor]:
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        return state["state_dict"]
    return state


def _map_key(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    """The first rule whose pattern matches ``key`` rewrites it; None when no rule matches."""
    for pattern, target in rules:
        match = pattern.match(key)
        if match is None:
            continue
        result = target
        for name, value in match.groupdict().items():
            result = result.replace(f"{{{name}}}", value)
        return result
    return None


def _convert(
    state: dict[str, Tensor], rules: list[tuple[re.Pattern[str], str]], caller: str
) -> dict[str, Tensor]:
    converted: dict[str, Tensor] = {}
    unmapped: list[str] = []
    for key, value in state.items():
        new_key = _map_key(key, rules)
        if new_key is None:
            unmapped.append(key)
        else:
            converted[new_key] = value
    if unmapped:
        raise KeyError(f"{caller}: no mapping for keys {unmapped}")
    return converted


def convert_mmdet_paa_state_dict(state: dict) -> dict[str, Tensor]:
    """Renames an mmdet PAA state dict (or a checkpoint holding ``state_dict``) to ladet names.

    Raises:
        KeyError: naming every key that no rule maps.
    """
    return _convert(_unwrap(state), _FORWARD_RULES, "convert_mmdet_paa_state_dict")
