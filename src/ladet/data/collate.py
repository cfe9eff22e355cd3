"""Collation of dataset items into a :class:`ladet.structures.Batch`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ladet.structures import Batch


@dataclass
class PinnableBatch(Batch):
    """A :class:`Batch` that ``DataLoader(pin_memory=True)`` can pin.

    The loader's pinning thread only pins containers it knows or objects with a ``pin_memory()``
    method; a plain dataclass would silently stay in pageable memory.
    """

    def pin_memory(self) -> PinnableBatch:
        return PinnableBatch(
            images=self.images.pin_memory(),
            image_sizes=self.image_sizes.pin_memory(),
            padded_sizes=self.padded_sizes.pin_memory(),
            scale_factors=self.scale_factors.pin_memory(),
            original_sizes=self.original_sizes.pin_memory(),
            gt_boxes=[boxes.pin_memory() for boxes in self.gt_boxes],
            gt_labels=[labels.pin_memory() for labels in self.gt_labels],
            image_ids=list(self.image_ids),
        )


def collate(items: Sequence[dict[str, Any]], size_divisor: int = 32) -> PinnableBatch:
    """Pads every image to the batch maximum (rounded up to ``size_divisor``) and stacks.

    The batch padding value is 0 in *normalised* space (i.e. the mean colour), the same value the
    per-image pad-to-32 uses; padded anchors are excluded through ``padded_sizes`` anyway.

    Args:
        items: dicts from :class:`ladet.data.coco.CocoDetection` or
            :func:`ladet.data.transforms.prepare_image_for_inference`, each ``image`` [3, H_i, W_i].

    Returns:
        Batch (a :class:`PinnableBatch`) with ``images`` [B, 3, H_max, W_max], ``image_sizes``/``padded_sizes``/
        ``original_sizes`` [B, 2] long (h, w), ``scale_factors`` [B, 2] float (x, y), boxes/labels
        lists and image ids.
    """
    if len(items) == 0:
        raise ValueError("collate() needs at least one item")
    max_height = max(int(item["image"].shape[1]) for item in items)
    max_width = max(int(item["image"].shape[2]) for item in items)
    max_height = (max_height + size_divisor - 1) // size_divisor * size_divisor
    max_width = (max_width + size_divisor - 1) // size_divisor * size_divisor
    images = items[0]["image"].new_zeros((len(items), 3, max_height, max_width))  # [B, 3, H, W]
    for position, item in enumerate(items):
        image = item["image"]
        images[position, :, : image.shape[1], : image.shape[2]] = image
    return PinnableBatch(
        images=images,
        image_sizes=torch.tensor([item["image_size"] for item in items], dtype=torch.long),
        padded_sizes=torch.tensor([item["padded_size"] for item in items], dtype=torch.long),
        scale_factors=torch.tensor([item["scale_factor"] for item in items], dtype=torch.float32),
        original_sizes=torch.tensor([item["original_size"] for item in items], dtype=torch.long),
        gt_boxes=[item["boxes"].to(torch.float32).reshape(-1, 4) for item in items],
        gt_labels=[item["labels"].to(torch.long).reshape(-1) for item in items],
        image_ids=[int(item["image_id"]) for item in items],
    )
