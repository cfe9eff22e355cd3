"""Learning-rate scaling, linear warm-up and epoch-based step decay (docs/algorithms.md §1.9)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from ladet.config.schema import OptimizerName, TrainConfig, choices


def scaled_learning_rate(train_config: TrainConfig, total_batch_size: int) -> float:
    """``lr × total_batch / base_batch_size`` when ``scale_lr``, else ``lr``.

    Example: lr 0.01 for 16 images, 2 processes × 8 images → 0.01; 1 process × 2 images → 0.00125.
    """
    if total_batch_size <= 0:
        raise ValueError(f"total batch size must be positive, got {total_batch_size}")
    if not train_config.scale_lr:
        return train_config.lr
    return train_config.lr * total_batch_size / train_config.base_batch_size


@dataclass(frozen=True)
class StepSchedule:
    """The lr at a (epoch, global iteration) position; stateless, so resuming needs no state.

    lr = base_lr · gamma^(number of steps ≤ epoch) · warm-up factor, where for iteration
    i < warmup_iters the factor is ``1 − (1 − i / warmup_iters) · (1 − warmup_ratio)``.
    Epochs and iterations are counted from 0.
    """

    base_lr: float
    warmup_iters: int
    warmup_ratio: float
    steps: tuple[int, ...]
    gamma: float

    @staticmethod
    def from_config(train_config: TrainConfig, base_lr: float) -> StepSchedule:
        return StepSchedule(
            base_lr=base_lr,
            warmup_iters=train_config.warmup_iters,
            warmup_ratio=train_config.warmup_ratio,
            steps=tuple(sorted(train_config.lr_steps)),
            gamma=train_config.lr_gamma,
        )

    def learning_rate(self, epoch: int, global_iteration: int) -> float:
        decays = bisect.bisect_right(self.steps, epoch)
        learning_rate = self.base_lr * self.gamma**decays
        if global_iteration < self.warmup_iters:
            progress = global_iteration / self.warmup_iters
            learning_rate *= 1.0 - (1.0 - progress) * (1.0 - self.warmup_ratio)
        return learning_rate

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, global_iteration: int) -> float:
        """Sets the lr of every parameter group and returns it."""
        learning_rate = self.learning_rate(epoch, global_iteration)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        return learning_rate


def build_optimizer(
    parameters: list[torch.nn.Parameter], train_config: TrainConfig, base_lr: float
) -> torch.optim.Optimizer:
    """``train.optimizer`` on all trainable parameters (norms and biases included), weight decay on all.

    "sgd": SGD with momentum (docs/algorithms.md §1.9); "adamw": AdamW with decoupled weight decay.
    """
    trainable = [parameter for parameter in parameters if parameter.requires_grad]
    if not trainable:
        raise ValueError("the training method has no trainable parameters")
    if train_config.optimizer == "adamw":
        return torch.optim.AdamW(trainable, lr=base_lr, weight_decay=train_config.weight_decay)
    if train_config.optimizer != "sgd":
        raise ValueError(
            f"train.optimizer must be one of {list(choices(OptimizerName))}, got {train_config.optimizer!r}"
        )
    return torch.optim.SGD(
        trainable, lr=base_lr, momentum=train_config.momentum, weight_decay=train_config.weight_decay
    )
