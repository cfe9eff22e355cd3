"""Small stand-ins for the engine tests: a linear "detector", a method, loaders and an evaluator.

They follow the contracts of docs/internals.md exactly (Batch in, loss dict out, Detections from
``predict``), are deterministic from (seed, epoch, index), and run in milliseconds. Also usable as
a script: ``python tests/engine_fakes.py WORK_DIR [--resume R] [--epochs E] ...`` trains with them
(this is what the SIGKILL and torchrun tests launch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import torch
from torch import nn

from ladet.config.schema import Config
from ladet.engine import TrainingComponents, train
from ladet.engine.distributed import shutdown_distributed
from ladet.structures import Batch, Detections

IMAGE_SIDE = 8
NUM_TRAIN_IMAGES = 12
NUM_VAL_IMAGES = 5


class TinyDetector(nn.Module):
    """A 1×1 conv + BatchNorm + linear layer; ``predict`` emits one box per image with a score from the weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=1)
        self.norm = nn.BatchNorm2d(4)  # running statistics differ per rank unless synchronised
        self.linear = nn.Linear(4, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.norm(self.conv(images)).mean(dim=(2, 3))  # [B, 4]
        return self.linear(features)  # [B, 2]

    def predict(self, batch: Batch) -> list[Detections]:
        scores = self.forward(batch.images).sigmoid()[:, 0]  # [B]
        boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]], device=batch.images.device)
        return [
            Detections(boxes, scores[i : i + 1], torch.zeros(1, dtype=torch.long, device=scores.device))
            for i in range(batch.batch_size)
        ]


class TinyMethod(nn.Module):
    """Regression of a target derived from the images; ``nan_at_call`` poisons one loss term."""

    def __init__(self, with_teacher: bool = False, nan_at_call: int | None = None) -> None:
        super().__init__()
        self.detector = TinyDetector()
        self._teacher = TinyDetector().eval() if with_teacher else None
        self.nan_at_call = nan_at_call
        self.calls = 0

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.calls += 1
        prediction = self.detector(batch.images)  # [B, 2]
        target = batch.images.mean(dim=(1, 2, 3))  # [B]
        loss_first = (prediction[:, 0] - target).pow(2).mean()
        loss_second = (prediction[:, 1] + target).abs().mean()
        if self.nan_at_call is not None and self.calls == self.nan_at_call:
            loss_second = loss_second * float("nan")
        return {"loss_first": loss_first, "loss_second": loss_second, "ratio": target.mean()}

    def evaluation_detector(self) -> TinyDetector:
        return self.detector

    def teacher_detector(self) -> TinyDetector | None:
        return self._teacher


def make_batch(seed: int, epoch: int, index: int, batch_size: int) -> Batch:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch * 1009 + index)
    images = torch.rand(batch_size, 3, IMAGE_SIDE, IMAGE_SIDE, generator=generator)
    sizes = torch.full((batch_size, 2), IMAGE_SIDE, dtype=torch.long)
    return Batch(
        images=images,
        image_sizes=sizes,
        padded_sizes=sizes.clone(),
        scale_factors=torch.ones(batch_size, 2),
        original_sizes=sizes.clone(),
        gt_boxes=[torch.zeros(0, 4) for _ in range(batch_size)],
        gt_labels=[torch.zeros(0, dtype=torch.long) for _ in range(batch_size)],
        image_ids=[index * batch_size + i for i in range(batch_size)],
    )


class FakeTrainLoader:
    """Batches derived from (seed, epoch, global batch index, rank); starts at ``start_batch``."""

    def __init__(
        self, config: Config, rank: int, world_size: int, epoch: int, start_batch: int, delay: float = 0.0
    ):
        self.config, self.rank, self.world_size = config, rank, world_size
        self.epoch, self.start_batch, self.delay = epoch, start_batch, delay
        self.batches_per_epoch = NUM_TRAIN_IMAGES // (config.data.images_per_gpu * world_size)

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def __iter__(self):
        for index in range(self.start_batch, self.batches_per_epoch):
            if self.delay:
                time.sleep(self.delay)
            yield make_batch(
                self.config.seed,
                self.epoch,
                index * self.world_size + self.rank,
                self.config.data.images_per_gpu,
            )


class FakeValLoader:
    """Each rank gets a disjoint contiguous shard of NUM_VAL_IMAGES single-image batches."""

    def __init__(self, rank: int, world_size: int) -> None:
        per_rank = -(-NUM_VAL_IMAGES // world_size)
        self.indices = list(range(rank * per_rank, min(NUM_VAL_IMAGES, (rank + 1) * per_rank)))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        for index in self.indices:
            batch = make_batch(99, 0, index, 1)
            batch.image_ids = [1000 + index]
            yield batch


class FakeEvaluator:
    """Mean score of the detections, as "AP"; counts images so tests can check coverage."""

    def __init__(self) -> None:
        self.scores: list[float] = []
        self.image_ids: list[int] = []

    def add(self, image_ids: list[int], detections: list[Detections]) -> None:
        self.image_ids.extend(image_ids)
        self.scores.extend(float(d.scores.sum()) for d in detections)

    def gather(self) -> None:
        from ladet.engine.distributed import all_gather_objects

        gathered = all_gather_objects((self.image_ids, self.scores))
        self.image_ids = [i for ids, _ in gathered for i in ids]
        self.scores = [s for _, scores in gathered for s in scores]

    def summarize(self) -> dict[str, Any]:
        from ladet.evaluation.coco import METRIC_NAMES

        metrics: dict[str, Any] = dict.fromkeys(METRIC_NAMES, 0.5)
        metrics.update(AP=sum(self.scores) / max(1, len(self.scores)), evaluated=len(self.image_ids))
        return metrics


BUILT_METHODS: list[TinyMethod] = []


def _build_tiny_method(with_teacher: bool, nan_at_call: int | None) -> TinyMethod:
    method = TinyMethod(with_teacher, nan_at_call)
    BUILT_METHODS.append(method)
    return method


def fake_components(
    with_teacher: bool = False, nan_at_call: int | None = None, delay: float = 0.0
) -> TrainingComponents:
    return TrainingComponents(
        build_method=lambda config, device: _build_tiny_method(with_teacher, nan_at_call),
        build_train_loader=lambda config, rank, world, epoch, start: FakeTrainLoader(
            config, rank, world, epoch, start, delay
        ),
        build_val_loader=lambda config, rank, world: FakeValLoader(rank, world),
        build_evaluator=lambda config, loader: FakeEvaluator(),
    )


def tiny_config(epochs: int = 2, images_per_gpu: int = 2, **train_overrides: Any) -> Config:
    config = Config()
    config.model.backbone.weights = None
    config.data.images_per_gpu = images_per_gpu
    config.train.epochs = epochs
    config.train.warmup_iters = 3
    config.train.lr_steps = [1]
    config.train.log_interval = 1
    config.deterministic = True
    for key, value in train_overrides.items():
        setattr(config.train, key, value)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description="train the engine stand-ins")
    parser.add_argument("work_dir")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images-per-gpu", type=int, default=2)
    parser.add_argument("--checkpoint-every-iters", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    config = tiny_config(
        arguments.epochs, arguments.images_per_gpu, checkpoint_every_iters=arguments.checkpoint_every_iters
    )
    metrics = train(
        config, arguments.work_dir, arguments.resume, components=fake_components(delay=arguments.delay)
    )
    rank = int(os.environ.get("RANK", "0"))
    # every rank stores its final weights so that a test can compare the ranks
    torch.save(BUILT_METHODS[-1].state_dict(), os.path.join(arguments.work_dir, f"weights_rank{rank}.pt"))
    shutdown_distributed()
    report = json.dumps({"rank": rank, "metrics": metrics})
    # one file per rank: the ranks' stdout lines can interleave under torchrun
    with open(os.path.join(arguments.work_dir, f"report_rank{rank}.json"), "w", encoding="utf-8") as stream:
        stream.write(report)
    print(report, file=sys.stdout, flush=True)


if __name__ == "__main__":
    main()
