"""One training epoch: lr schedule, forward (under the precision policy), finite check, backward, step."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ladet.engine.checkpointing import TrainingPosition
from ladet.engine.distributed import DistributedContext, all_reduce_mean
from ladet.engine.logging import RunLogger
from ladet.engine.precision import Precision
from ladet.engine.progress import progress_bar as tqdm  # tqdm on a terminal, plain lines in logs
from ladet.engine.schedule import StepSchedule
from ladet.structures import Batch


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training stops before the bad step is applied."""


@dataclass
class EpochSettings:
    """What :func:`train_one_epoch` needs besides the model and the data.

    Attributes:
        epoch: 0-based epoch index.
        num_epochs: total epochs (for messages).
        iterations_in_epoch: batches this epoch runs in total (counting those already done).
        precision: the autocast policy of the forward (``train.amp``); fp32 by default. The
            GradScaler passed to :func:`train_one_epoch` must match it (``precision.grad_scaler()``).
        grad_clip_norm: clip the global gradient norm to this value (None: off).
        log_interval: iterations between ``log.jsonl`` records.
        checkpoint_every_iters: call ``save_latest`` every N global iterations (0: off).
        iterations_after_epoch: iterations the later epochs will run (for the run's ETA).
    """

    epoch: int
    num_epochs: int
    iterations_in_epoch: int
    precision: Precision = field(default_factory=Precision)
    grad_clip_norm: float | None = None
    log_interval: int = 20
    checkpoint_every_iters: int = 0
    iterations_after_epoch: int = 0


def _split_outputs(outputs: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Separates ``loss_*`` terms (summed) from diagnostics (logged only)."""
    losses = {key: value for key, value in outputs.items() if key.startswith("loss_")}
    if not losses:
        raise ValueError(f"the training method returned no 'loss_*' term (keys: {sorted(outputs)})")
    diagnostics = {
        key: torch.as_tensor(value).detach().float().mean()
        for key, value in outputs.items()
        if not key.startswith("loss_")
    }
    return losses, diagnostics


def _describe_non_finite(names: list[str], values: list[float]) -> str:
    return ", ".join(
        f"{name}={value}" for name, value in zip(names, values, strict=True) if not math.isfinite(value)
    )


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule: StepSchedule,
    position: TrainingPosition,
    settings: EpochSettings,
    context: DistributedContext,
    logger: RunLogger,
    save_latest: Callable[[TrainingPosition], None],
) -> TrainingPosition:
    """Runs the remaining batches of one epoch from ``position``; returns the position after it.

    Raises:
        NonFiniteLossError: naming the iteration, the epoch and every non-finite loss term; the
            optimiser step of that iteration is not applied and nothing is saved.
    """
    model.train()
    device = context.device
    start_batch = position.iteration_in_epoch
    global_iteration = position.global_iteration
    progress = tqdm(
        total=settings.iterations_in_epoch,
        initial=start_batch,
        desc=f"epoch {settings.epoch + 1}/{settings.num_epochs}",
        disable=not context.is_main,
        dynamic_ncols=True,
    )
    iteration_in_epoch = start_batch
    data_start = epoch_start = time.perf_counter()
    for batch_index, batch in enumerate(loader, start=start_batch):
        if batch_index >= settings.iterations_in_epoch:
            break
        data_time = time.perf_counter() - data_start
        learning_rate = schedule.apply(optimizer, settings.epoch, global_iteration)
        batch = batch.to(device, non_blocking=True)
        with settings.precision.autocast():
            outputs = model(batch)
        losses, diagnostics = _split_outputs(outputs)
        total_loss = torch.stack([loss.float() for loss in losses.values()]).sum()
        names = ["loss", *losses, *diagnostics]
        stacked = torch.stack(
            [total_loss.detach(), *(loss.detach().float() for loss in losses.values()), *diagnostics.values()]
        )
        values = all_reduce_mean(stacked).tolist()  # the one host sync per iteration
        if not all(math.isfinite(value) for value in values[: 1 + len(losses)]):
            progress.close()
            raise NonFiniteLossError(
                f"non-finite loss at iteration {global_iteration + 1} (epoch {settings.epoch + 1}, "
                f"batch {batch_index + 1} of the epoch): {_describe_non_finite(names[: 1 + len(losses)], values[: 1 + len(losses)])}. "
                "Training stopped before this step; the last saved checkpoint (latest.pth) holds the last good weights."
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total_loss).backward()
        if settings.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for group in optimizer.param_groups for p in group["params"]], settings.grad_clip_norm
            )
        scaler.step(optimizer)
        scaler.update()
        global_iteration += 1
        iteration_in_epoch = batch_index + 1
        record = dict(zip(names, values, strict=True))
        progress.set_postfix(
            {key: f"{value:.4f}" for key, value in record.items()} | {"lr": f"{learning_rate:.2e}"}
        )
        progress.update(1)
        if (
            iteration_in_epoch % settings.log_interval == 0
            or iteration_in_epoch == settings.iterations_in_epoch
        ):
            record.update(
                epoch=settings.epoch + 1,
                iteration_in_epoch=iteration_in_epoch,
                lr=learning_rate,
                data_time=data_time,
                iteration_time=time.perf_counter() - data_start,
                eta_s=(time.perf_counter() - epoch_start)
                / (iteration_in_epoch - start_batch)
                * (settings.iterations_in_epoch - iteration_in_epoch + settings.iterations_after_epoch),
            )
            logger.log("train", global_iteration, record)
        if (
            settings.checkpoint_every_iters > 0
            and global_iteration % settings.checkpoint_every_iters == 0
            and iteration_in_epoch < settings.iterations_in_epoch
        ):
            save_latest(TrainingPosition(settings.epoch, iteration_in_epoch, global_iteration))
        data_start = time.perf_counter()
    progress.close()
    return TrainingPosition(settings.epoch, iteration_in_epoch, global_iteration)
