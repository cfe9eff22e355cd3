"""mmdetection-style PAA checkpoints for the tests: a ladet state dict renamed to mmdet's key names.

ladet only reads mmdet checkpoints (``ladet.models.mmdet_compat.convert_mmdet_paa_state_dict``);
the tests need the opposite direction to make such checkpoints without downloading one. The
inverse is built here from the same table, ``MMDET_TO_LADET_RULES``.
"""

from __future__ import annotations

import re

from torch import Tensor

from ladet.models.mmdet_compat import MMDET_TO_LADET_RULES

__all__ = ["to_mmdet_paa_state_dict"]


def _pattern(template: str) -> re.Pattern[str]:
    escaped = re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)")
    return re.compile("^" + escaped.replace(re.escape("{rest}"), r"(?P<rest>.+)") + "$")


_INVERSE = [
    (_pattern(ladet_template), mmdet_template) for mmdet_template, ladet_template in MMDET_TO_LADET_RULES
]


def to_mmdet_paa_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Renames a ``PAADetector`` state dict to mmdet PAA names.

    Raises:
        KeyError: naming every key no rule maps (e.g. the IOP/COP predictors mmdet's PAAHead lacks).
    """
    renamed: dict[str, Tensor] = {}
    unmapped: list[str] = []
    for key, value in state.items():
        for pattern, template in _INVERSE:
            match = pattern.match(key)
            if match is not None:
                for name, part in match.groupdict().items():
                    template = template.replace(f"{{{name}}}", part)
                renamed[template] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise KeyError(f"to_mmdet_paa_state_dict: no mapping for keys {unmapped}")
    return renamed
