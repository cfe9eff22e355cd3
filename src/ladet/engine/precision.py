"""The one precision policy: ``train.amp`` → the autocast context of every forward pass.

``train.amp`` takes ``false`` (fp32), ``float16``, ``bfloat16``, or ``true`` (kept as ``float16``
for older configs). The student forward (``engine/loop.py``), the teacher forward (it runs inside
the student's region, ``methods/base.py``), evaluation (``engine/evaluate.py``) and the predictor
all take their context from :func:`precision_policy`; nothing else opens an autocast region.

Rules:

* ``float16`` autocasts on CUDA only (with a dynamic :class:`torch.amp.GradScaler`); on the CPU it
  means fp32, so the many ``amp: true`` configs keep their bit-for-bit fp32 behaviour there.
* ``bfloat16`` autocasts on CUDA (a GPU with bf16 support) and on the CPU; it needs no GradScaler
  (bf16 has fp32's exponent range, gradients do not underflow).
* Post-processing (decode, NMS, score voting) and the label assignment costs always run in fp32
  with autocast disabled, whatever the policy (``models/postprocess.py``, ``assign/costs.py``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from ladet.config.schema import AmpPolicy, choices

__all__ = ["AMP_CHOICES", "Precision", "amp_dtype", "precision_policy"]

AMP_CHOICES: tuple[bool | str, ...] = choices(AmpPolicy)
_DTYPES: dict[bool | str, torch.dtype | None] = {
    False: None,
    True: torch.float16,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def amp_dtype(amp: bool | str) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` asks for (None: fp32).

    Raises:
        ValueError: a value that is not one of ``false | true | float16 | bfloat16``.
    """
    if isinstance(amp, (bool, str)) and amp in _DTYPES:
        return _DTYPES[amp]
    raise ValueError(f"train.amp: {amp!r} is not one of {list(AMP_CHOICES)}")


@dataclass(frozen=True)
class Precision:
    """The autocast policy of one device.

    Attributes:
        device_type: "cuda" or "cpu" (the ``device_type`` of :class:`torch.autocast`).
        dtype: the autocast dtype, or None for fp32 (no autocast region at all).
    """

    device_type: str = "cpu"
    dtype: torch.dtype | None = None

    @property
    def enabled(self) -> bool:
        """True when forwards run under autocast."""
        return self.dtype is not None

    @property
    def uses_grad_scaler(self) -> bool:
        """fp16 needs loss scaling (its exponent range is small); bf16 and fp32 do not."""
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        """``float32``, ``float16`` or ``bfloat16``, for logs and the self-check."""
        return "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context the forward runs in: ``torch.autocast`` or a no-op for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is enabled only for fp16 (disabled: ``scale`` and ``step`` pass through)."""
        device = self.device_type if self.uses_grad_scaler else "cuda"
        return torch.amp.GradScaler(device, enabled=self.uses_grad_scaler)


def precision_policy(amp: bool | str, device: torch.device | str) -> Precision:
    """The policy of ``train.amp`` on ``device``.

    Raises:
        ValueError: an unknown ``amp`` value, or ``bfloat16`` on a GPU without bf16 support.
    """
    dtype = amp_dtype(amp)
    device_type = torch.device(device).type
    if device_type not in ("cuda", "cpu") or (dtype == torch.float16 and device_type != "cuda"):
        return Precision(device_type, None)
    if dtype == torch.bfloat16 and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"train.amp: bfloat16 needs a GPU with bf16 support (Ampere or newer); "
            f"{torch.cuda.get_device_name()} has none: use float16 or false"
        )
    return Precision(device_type, dtype)
