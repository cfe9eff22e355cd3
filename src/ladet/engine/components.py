"""The pieces the engine builds a run from, bundled so tests and tools can swap them.

The defaults are the real ladet modules (imported lazily so the engine imports cheaply):
``ladet.methods.build_method``, ``ladet.data.build_train_loader`` / ``build_val_loader`` and
``ladet.evaluation.coco.CocoEvaluator``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ladet.config.schema import Config
from ladet.structures import Batch

# (config, device) -> TrainingMethod (an nn.Module whose forward(batch) returns a loss dict)
MethodBuilder = Callable[[Config, torch.device], nn.Module]
# (config, rank, world_size, epoch, start_batch) -> iterable of Batch
TrainLoaderBuilder = Callable[[Config, int, int, int, int], Iterable[Batch]]
# (config, rank, world_size) -> iterable of Batch
ValLoaderBuilder = Callable[[Config, int, int], Iterable[Batch]]
# (config, val_loader) -> evaluator with add / gather / summarize
EvaluatorBuilder = Callable[[Config, Iterable[Batch]], Any]
# (config, splits, is_main) -> None; raises before step 0 when the data has errors
DataChecker = Callable[[Config, tuple[str, ...], bool], None]


def _real_method(config: Config, device: torch.device) -> nn.Module:
    from ladet.methods import build_method

    return build_method(config, device)


def _real_train_loader(
    config: Config, rank: int, world_size: int, epoch: int, start_batch: int
) -> Iterable[Batch]:
    from ladet.data import build_train_loader

    return build_train_loader(config, rank=rank, world_size=world_size, epoch=epoch, start_batch=start_batch)


def _real_val_loader(config: Config, rank: int, world_size: int) -> Iterable[Batch]:
    from ladet.data import build_val_loader

    return build_val_loader(config, rank=rank, world_size=world_size)


def _real_evaluator(config: Config, val_loader: Iterable[Batch]) -> Any:
    from ladet.evaluation.coco import build_dataset_evaluator

    dataset = getattr(val_loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "label_to_category_id"):
        raise TypeError(
            "the validation loader's dataset must provide label_to_category_id (a DetectionDataset)"
        )
    return build_dataset_evaluator(config, dataset)


def _real_check_data(config: Config, splits: tuple[str, ...], is_main: bool) -> None:
    from ladet.data.check import run_data_check
    from ladet.data.classes import resolve_classes

    resolve_classes(config)
    run_data_check(config, splits, is_main)


@dataclass
class TrainingComponents:
    """Factories for the method, the loaders and the evaluator of a training run."""

    build_method: MethodBuilder = _real_method
    build_train_loader: TrainLoaderBuilder = _real_train_loader
    build_val_loader: ValLoaderBuilder = _real_val_loader
    build_evaluator: EvaluatorBuilder = _real_evaluator
    # the data check (ladet.data.check) runs by default only with the real training loader
    check_data: DataChecker | None = None

    def __post_init__(self) -> None:
        if self.check_data is None and self.build_train_loader is _real_train_loader:
            self.check_data = _real_check_data
