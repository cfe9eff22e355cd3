"""collate() shapes and padding; train/val loaders on the tiny built-in dataset (workers, resume, shards)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ladet.config.schema import Config, DatasetConfig
from ladet.data import build_dataset, build_train_loader, build_val_loader, collate, set_loader_epoch
from ladet.data.builtin import make_builtin_dataset
from ladet.structures import Batch


def _item(height: int, width: int, padded: tuple[int, int], boxes: int, image_id: int) -> dict:
    return {
        "image": torch.ones((3, *padded)),
        "boxes": torch.arange(boxes * 4, dtype=torch.float32).reshape(boxes, 4),
        "labels": torch.arange(boxes),
        "image_id": image_id,
        "image_size": (height, width),
        "padded_size": padded,
        "scale_factor": (1.5, 2.0),
        "original_size": (height // 2, width // 2),
    }


def test_collate_pads_to_batch_max_and_fills_fields() -> None:
    batch = collate([_item(40, 70, (64, 96), 2, 5), _item(90, 30, (96, 32), 0, 9)])
    assert isinstance(batch, Batch)
    assert batch.images.shape == (2, 3, 96, 96)
    assert batch.images[0, :, :64, :96].eq(1).all() and batch.images[0, :, 64:].eq(0).all()
    assert batch.images[1, :, :, 32:].eq(0).all()
    assert batch.image_sizes.tolist() == [[40, 70], [90, 30]] and batch.image_sizes.dtype == torch.long
    assert batch.padded_sizes.tolist() == [[64, 96], [96, 32]]
    assert batch.scale_factors.tolist() == [[1.5, 2.0], [1.5, 2.0]]
    assert batch.original_sizes.tolist() == [[20, 35], [45, 15]]
    assert [b.shape for b in batch.gt_boxes] == [(2, 4), (0, 4)]
    assert batch.gt_labels[0].tolist() == [0, 1] and batch.image_ids == [5, 9]
    with pytest.raises(ValueError):
        collate([])


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    folder = tmp_path_factory.mktemp("builtin_loader")
    paths = make_builtin_dataset(folder, seed=0, num_train=10, num_val=5, image_size=(96, 160))
    config = Config()
    config.data.train = DatasetConfig(str(paths["train_ann_file"]), str(paths["train_image_dir"]))
    config.data.val = DatasetConfig(str(paths["val_ann_file"]), str(paths["val_image_dir"]))
    config.data.max_size, config.data.short_size = 200, 128
    config.data.multiscale_short_range = [96, 128]
    config.data.images_per_gpu = 2
    config.data.workers_per_gpu = 0
    config.seed = 3
    return config


def _signature(batches: list[Batch]) -> list[tuple]:
    return [
        (tuple(b.image_ids), b.images.sum().item(), tuple(b.image_sizes.flatten().tolist())) for b in batches
    ]


def test_train_loader_batches(config: Config) -> None:
    loader = build_train_loader(config)
    batches = list(loader)
    assert len(batches) == len(loader) == loader.batch_sampler.batches_per_epoch
    for batch in batches:
        assert batch.images.shape[0] == 2
        assert batch.images.shape[2] % 32 == 0 and batch.images.shape[3] % 32 == 0
        assert (batch.padded_sizes % 32 == 0).all() and (batch.padded_sizes >= batch.image_sizes).all()
        assert int(batch.image_sizes.min()) >= 96 and int(batch.image_sizes.max()) <= 200


def test_workers_and_resume_give_identical_batches(config: Config) -> None:
    reference = _signature(list(build_train_loader(config, epoch=1)))
    config.data.workers_per_gpu = 2
    try:
        with_workers = _signature(list(build_train_loader(config, epoch=1)))
        resumed = _signature(list(build_train_loader(config, epoch=1, start_batch=2)))
    finally:
        config.data.workers_per_gpu = 0
    assert with_workers == reference
    assert resumed == reference[2:]
    loader = build_train_loader(config, epoch=0)
    set_loader_epoch(loader, 1)
    assert _signature(list(loader)) == reference
    assert _signature(list(build_train_loader(config, epoch=2))) != reference


def test_val_loader_shards_are_disjoint(config: Config) -> None:
    dataset = build_dataset(config, "val")
    seen = []
    for rank in range(2):
        for batch in build_val_loader(config, rank=rank, world_size=2):
            assert batch.images.shape[0] == 1
            seen.extend(batch.image_ids)
    assert sorted(seen) == sorted(record.image_id for record in dataset.records)
    with pytest.raises(ValueError, match="unknown split"):
        build_dataset(config, "bogus")


def test_missing_annotation_file_is_named(tmp_path: Path) -> None:
    config = Config()
    config.data.train = DatasetConfig(str(tmp_path / "nope.json"), str(tmp_path))
    with pytest.raises(ValueError, match="nope.json"):
        build_dataset(config, "train")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning needs CUDA")
def test_loader_pins_batches_on_cuda(config: Config) -> None:
    batch = next(iter(build_train_loader(config)))
    assert batch.images.is_pinned() and batch.gt_boxes[0].is_pinned()
    moved = batch.to("cuda", non_blocking=True)
    assert moved.images.is_cuda and moved.image_ids == batch.image_ids
