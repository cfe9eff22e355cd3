"""Data layer: COCO / VOC / YOLO datasets, the data check, transforms, samplers, collation, built-in data.

Typical use::

    loader = build_train_loader(config, rank, world_size, epoch=epoch, start_batch=resume_batch)
    for batch in loader:  # ladet.structures.Batch
        ...
    set_loader_epoch(loader, epoch + 1)  # or build a new loader per epoch
"""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler

from ladet.config.schema import Config
from ladet.data.builtin import make_builtin_dataset
from ladet.data.check import DataCheckError, check_data, run_data_check
from ladet.data.classes import resolve_classes
from ladet.data.coco import CocoDetection
from ladet.data.collate import collate
from ladet.data.dataset import DetectionDataset
from ladet.data.loading import load_annotations
from ladet.data.samplers import GroupedBatchSampler, InferenceSampler, SampleKey
from ladet.data.transforms import DetectionTransform, prepare_image_for_inference

__all__ = [
    "CocoDetection",
    "DataCheckError",
    "DetectionDataset",
    "check_data",
    "load_annotations",
    "resolve_classes",
    "run_data_check",
    "DetectionTransform",
    "GroupedBatchSampler",
    "InferenceSampler",
    "SampleKey",
    "build_dataset",
    "build_train_loader",
    "build_val_loader",
    "collate",
    "make_builtin_dataset",
    "prepare_image_for_inference",
    "set_loader_epoch",
]


def build_dataset(config: Config, split: str) -> DetectionDataset:
    """The dataset of ``config.data.train`` (split "train") or ``config.data.val`` ("val", "test"),
    read with the reader of ``data.format`` (images excluded by the data check stay excluded)."""
    data = config.data
    if split == "train":
        transform = DetectionTransform.for_training(data)
    elif split in ("val", "test"):
        transform = DetectionTransform.for_evaluation(data)
    else:
        raise ValueError(f"unknown split '{split}' (expected 'train' or 'val')")
    annotations = load_annotations(config, split)
    return DetectionDataset(
        annotations, transform=transform, skip_unreadable=data.skip_unreadable_images, seed=config.seed
    )


def build_train_loader(
    config: Config, rank: int = 0, world_size: int = 1, epoch: int = 0, start_batch: int = 0
) -> DataLoader:
    """Training loader: grouped distributed batch sampler, ``data.images_per_gpu`` per batch.

    ``loader.batch_sampler`` is the :class:`GroupedBatchSampler` (``batches_per_epoch``,
    ``set_epoch``); call :func:`set_loader_epoch` before each new epoch.
    """
    dataset = build_dataset(config, "train")
    dataset.set_epoch(epoch)
    batch_sampler = GroupedBatchSampler(
        dataset.aspect_ratio_groups(),
        batch_size=config.data.images_per_gpu,
        rank=rank,
        world_size=world_size,
        seed=config.seed,
        epoch=epoch,
        start_batch=start_batch,
    )
    return _data_loader(dataset, batch_sampler, config)


def _data_loader(
    dataset: DetectionDataset, batch_sampler: Sampler[list[SampleKey]] | BatchSampler, config: Config
) -> DataLoader:
    """The DataLoader both splits use: ``data.workers_per_gpu`` workers, pinned memory on CUDA."""
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=config.data.workers_per_gpu,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def set_loader_epoch(loader: DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Points a training loader at ``epoch`` (sampler and dataset)."""
    sampler = loader.batch_sampler
    if isinstance(sampler, GroupedBatchSampler):
        sampler.set_epoch(epoch, start_batch)
    if isinstance(loader.dataset, DetectionDataset):
        loader.dataset.set_epoch(epoch)


def build_val_loader(config: Config, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Evaluation loader: this rank's disjoint contiguous shard, ``data.test_images_per_gpu``."""
    dataset = build_dataset(config, "val")
    batch_sampler = BatchSampler(
        InferenceSampler(len(dataset), rank, world_size),
        batch_size=config.data.test_images_per_gpu,
        drop_last=False,
    )
    return _data_loader(dataset, batch_sampler, config)
