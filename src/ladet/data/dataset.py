"""The detection dataset every layout (COCO, VOC, YOLO) is read into: records -> transformed items."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from ladet.data.images import read_rgb_image
from ladet.data.records import DatasetAnnotations
from ladet.data.transforms import DetectionTransform, image_to_tensor, sample_generator

logger = logging.getLogger(__name__)


class DetectionDataset(Dataset):
    """Transformed items (see ``ladet.data.transforms``) of a parsed split.

    Args:
        annotations: the parsed split (``ladet.data.loading.load_annotations``).
        transform: applied as ``transform(image [3,H,W], boxes [G,4], generator)``; defaults to
            the test transform of the default data config (1333 x 800, no flip).
        skip_unreadable: training only: an image that cannot be read at run time (the image pass
            of ``ladet.data.check`` was off) is replaced by the next readable one, with a warning.
            In evaluation an unreadable image is always an error (substituting another image
            would count it twice); there the image pass drops unreadable images up front.
        seed: base seed of the per-sample random generators.

    Indexing: ``dataset[index]`` uses the epoch set by :meth:`set_epoch`; ``dataset[(index,
    epoch)]`` (what :class:`ladet.data.samplers.GroupedBatchSampler` yields) carries the epoch
    itself so workers never depend on a stale copy of the dataset.
    """

    def __init__(
        self,
        annotations: DatasetAnnotations,
        transform: Callable[..., dict[str, Any]] | None = None,
        skip_unreadable: bool = False,
        seed: int = 0,
    ) -> None:
        self.annotations = annotations
        self.ann_file = annotations.source
        self.image_dir = Path(annotations.image_dir)
        self.train = annotations.train
        self.transform = transform if transform is not None else DetectionTransform()
        self.skip_unreadable = skip_unreadable
        self.seed = seed
        self.epoch = 0
        self.records = annotations.records
        self.label_to_category_id = annotations.category_ids
        self.class_names = annotations.class_names
        self.problems = annotations.problems
        self.unreadable_images: set[int] = set()  # indices skipped at read time (this process)
        if not self.records:
            raise ValueError(
                f"{self.ann_file}: no usable images (train={self.train}); what was dropped:\n"
                + self.problems.format_table()
            )

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.label_to_category_id)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose random draws ``dataset[index]`` uses."""
        self.epoch = epoch

    def aspect_ratio_groups(self) -> list[int]:
        """Group id per image: 1 if width / height > 1 (landscape), else 0 (mmdet flag)."""
        return [int(record.width / record.height > 1) for record in self.records]

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.records[index].file_name

    def read_image(self, index: int) -> Image.Image:
        """Decodes image ``index`` as 8-bit RGB; ValueError naming the file if missing or unreadable."""
        path = self.image_path(index)
        try:
            return read_rgb_image(path)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot read image {path} (image id {self.records[index].image_id}): {error}"
                " (`ladet check-data CONFIG` checks every image before training)"
            ) from error

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            index, epoch = int(key[0]), int(key[1])
        else:
            index, epoch = int(key), self.epoch
        generator = sample_generator(self.seed, epoch, index)
        for attempt in range(len(self.records)):
            current = (index + attempt) % len(self.records)
            try:
                image = self.read_image(current)
            except ValueError:
                if not (self.skip_unreadable and self.train):
                    raise
                if current not in self.unreadable_images:
                    self.unreadable_images.add(current)
                    logger.warning(
                        "skipping unreadable image %s (%d skipped so far in this process)",
                        self.image_path(current),
                        len(self.unreadable_images),
                    )
                continue
            return self._make_item(current, image, generator)
        raise ValueError(f"{self.ann_file}: no readable image in {self.image_dir}")

    def _make_item(self, index: int, image: Image.Image, generator: torch.Generator) -> dict[str, Any]:
        record = self.records[index]
        if image.size != (record.width, record.height):
            raise ValueError(
                f"image {self.image_path(index)} (image id {record.image_id}) is "
                f"{image.size[0]}x{image.size[1]} but {self.ann_file} says {record.width}x{record.height}"
            )
        item = self.transform(image_to_tensor(image), torch.from_numpy(record.boxes), generator)
        item["labels"] = torch.from_numpy(record.labels)
        item["image_id"] = record.image_id
        return item
