"""Time one PAA-R50 training iteration at 800×1333, batch 2, on the CPU, split into its stages.

    python -m benchmarks.train_step [--repeats 3] [--warmup 1] [--single-thread] [--data-dir DIR]

Prints one line ``data_s=… forward_s=… assign_s=… loss_s=… backward_s=… total_s=…``: medians over
``--repeats`` iterations after ``--warmup`` ones. The stages are those of the baseline method's
forward (``ladet.methods.baseline.BaselineMethod``): network forward; anchors + PAA assignment
(pre-assignment, costs, batched GMM); the PAA losses; backward + SGD step. ``data_s`` is the time
the loop waits for the next batch from a DataLoader with 2 workers (generated built-in images
drawn at 800..1333 px, resized to fit 1333×800); prefetching hides most of it. Backbone weights
are random (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ladet.config.schema import Config
from ladet.data import build_train_loader, make_builtin_dataset
from ladet.engine.schedule import build_optimizer
from ladet.methods import build_method


def benchmark_config(data_dir: Path) -> Config:
    config = Config()  # PAA-R50 FPN defaults, 1333×800
    config.model.backbone.weights = None
    config.model.num_classes = 12  # the built-in dataset's classes
    config.data.train.ann_file = str(data_dir / "annotations" / "train.json")
    config.data.train.image_dir = str(data_dir / "train")
    config.data.images_per_gpu = 2
    config.data.workers_per_gpu = 2
    return config


def run(repeats: int, warmup: int, data_dir: Path) -> dict[str, float]:
    iterations = repeats + warmup
    if not (data_dir / "annotations" / "train.json").is_file():
        make_builtin_dataset(data_dir, seed=0, num_train=2 * iterations, num_val=1, image_size=(800, 1333))
    config = benchmark_config(data_dir)
    method: Any = build_method(config, "cpu").train()
    optimizer = build_optimizer(list(method.parameters()), config.train, base_lr=0.00125)
    loader = iter(build_train_loader(config, rank=0, world_size=1, epoch=0, start_batch=0))
    timings: dict[str, list[float]] = {
        name: [] for name in ("data", "forward", "assign", "loss", "backward", "total")
    }
    for _ in range(iterations):
        start = time.perf_counter()
        batch = next(loader)
        loaded = time.perf_counter()
        outputs = method.detector(batch.images)
        forwarded = time.perf_counter()
        grid, valid_mask = method.anchors_for(outputs, batch)
        assignment = method.self_assignment(outputs, grid, valid_mask, batch)
        assigned = time.perf_counter()
        losses = method.loss(outputs.float(), grid, assignment, batch.batch_size)
        total_loss = sum(losses.values())
        lossed = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        total_loss.backward()
        optimizer.step()
        finished = time.perf_counter()
        for name, value in (
            ("data", loaded - start),
            ("forward", forwarded - loaded),
            ("assign", assigned - forwarded),
            ("loss", lossed - assigned),
            ("backward", finished - lossed),
            ("total", finished - start),
        ):
            timings[name].append(value)
    return {name: statistics.median(values[warmup:]) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--single-thread", action="store_true", help="torch.set_num_threads(1)")
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse/generate the images here")
    arguments = parser.parse_args()
    if arguments.single_thread:
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as temporary:
        data_dir = arguments.data_dir or Path(temporary) / "data"
        medians = run(arguments.repeats, arguments.warmup, data_dir)
    print(" ".join(f"{name}_s={value:.3f}" for name, value in medians.items()))


if __name__ == "__main__":
    main()
