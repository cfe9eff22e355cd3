"""``train(config, work_dir, resume)``: the whole training run, identical for 1 or N processes.

Order of a run: distributed set-up → seeds → resolved config written to ``work_dir/config.yaml``
→ method (+ ``load_from``) → SyncBN/DDP → SGD + schedule + GradScaler → resume → teacher
evaluation (fresh runs, when the method has a teacher) → epochs (checkpoint, evaluation).
Only rank 0 writes files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ladet.config.loader import config_to_dict, dump_config
from ladet.config.schema import Config
from ladet.engine.checkpointing import (
    TrainingPosition,
    build_training_state,
    load_initial_weights,
    unwrap_model,
)
from ladet.engine.components import TrainingComponents
from ladet.engine.distributed import (
    DistributedContext,
    all_gather_objects,
    barrier,
    broadcast_buffers,
    broadcast_object,
    capture_rng_states,
    init_distributed,
    seed_everything,
    set_deterministic,
    trains_batchnorm,
    use_sync_batchnorm,
)
from ladet.engine.evaluate import evaluate
from ladet.engine.logging import RunLogger
from ladet.engine.loop import EpochSettings, train_one_epoch
from ladet.engine.precision import precision_policy
from ladet.engine.resume import agree_on_resume_path, restore_on_every_rank
from ladet.engine.run_folder import (
    WeightsExporter,
    prune_epoch_checkpoints,
    remove_stale_temporary_files,
    save_checkpoints,
)
from ladet.engine.schedule import StepSchedule, build_optimizer, scaled_learning_rate
from ladet.engine.work_dir import prepare_fresh_work_dir
from ladet.evaluation.metrics_json import dumps_strict, metrics_to_json

TEACHER_METRICS_FILE = "teacher_metrics.json"


def write_json(path: Path, value: Any) -> None:
    path.write_text(dumps_strict(value), encoding="utf-8")  # strict JSON: NaN -> null + reason


def wrap_for_training(method: nn.Module, config: Config, context: DistributedContext) -> nn.Module:
    """SyncBatchNorm (``train.sync_bn``: CUDA, several processes, trained BN only) and DDP.

    The teacher is not a submodule of the method, so DDP neither sees nor synchronises it.
    """
    if not context.is_distributed:
        return method
    if use_sync_batchnorm(config.train.sync_bn, trains_batchnorm(method), context):
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    device_ids = [context.local_rank] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(method, device_ids=device_ids)


def _epoch_length(loader: Any, start_batch: int, max_iters_per_epoch: int | None) -> int:
    """Batches in the whole epoch: those already done + what the loader still yields, capped."""
    remaining = len(loader)
    full = start_batch + remaining
    if max_iters_per_epoch is not None:
        full = min(full, max_iters_per_epoch)
    return full


class _Run:
    """State shared by the steps of one training run (kept private; use :func:`train`)."""

    def __init__(
        self, config: Config, work_dir: Path, components: TrainingComponents, context: DistributedContext
    ):
        self.config = config
        self.work_dir = work_dir
        self.components = components
        self.context = context
        self.config_dict = config_to_dict(config)
        self.precision = precision_policy(config.train.amp, context.device)  # every forward's autocast
        self._val_loader: Any = None

    def save(
        self, model: nn.Module, optimizer: Any, scaler: Any, position: TrainingPosition, names: list[str]
    ) -> None:
        """Writes ``names`` on rank 0 (a collective: every rank must call it, for the RNG states)."""
        rng_states_per_rank = all_gather_objects(capture_rng_states())
        if not self.context.is_main:
            return
        state = build_training_state(
            model, optimizer, scaler, position, self.config_dict, rng_states_per_rank
        )
        save_checkpoints(self.work_dir, state, names)  # one write, the other names hard-linked
        prune_epoch_checkpoints(self.work_dir, self.config.train.keep_checkpoints)

    def val_loader(self) -> Any:
        if self._val_loader is None:
            self._val_loader = self.components.build_val_loader(
                self.config, self.context.rank, self.context.world_size
            )
        return self._val_loader

    def evaluate(self, detector: nn.Module, title: str) -> dict[str, Any]:
        loader = self.val_loader()
        evaluator = self.components.build_evaluator(self.config, loader)
        return evaluate(
            detector,
            loader,
            evaluator,
            self.context.device,
            self.context.is_main,
            title=title,
            precision=self.precision,
        )


def _teacher_metrics(
    run: _Run, method: nn.Module, fresh_start: bool, logger: RunLogger
) -> dict[str, Any] | None:
    """Evaluates the teacher once before step 0; on resume reads the stored result back."""
    teacher = getattr(method, "teacher_detector", lambda: None)()
    if teacher is None or not run.config.method.evaluate_teacher:
        return None
    stored = run.work_dir / TEACHER_METRICS_FILE
    if not fresh_start:  # rank 0's file decides for every rank (other nodes may not share its disk)
        saved = (
            json.loads(stored.read_text(encoding="utf-8"))
            if run.context.is_main and stored.is_file()
            else None
        )
        saved = broadcast_object(saved)
        if saved is not None:
            return saved
    metrics = run.evaluate(teacher, title="teacher")
    logger.log("teacher_eval", 0, _scalar_metrics(metrics))
    if run.context.is_main:
        write_json(stored, metrics_to_json(metrics))
    return metrics


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if isinstance(value, (int, float))}


def _side_by_side(student: dict[str, Any], teacher: dict[str, Any]) -> str:
    keys = [key for key in ("AP", "AP50", "AP75", "APs", "APm", "APl") if key in student and key in teacher]
    rows = [f"{'(AP %)':8s}" + "".join(f"{key:>8s}" for key in keys)]
    for name, metrics in (("student", student), ("teacher", teacher)):
        rows.append(f"{name:8s}" + "".join(f"{100 * float(metrics[key]):8.2f}" for key in keys))
    return "\n".join(rows)


def train(
    config: Config,
    work_dir: str | Path,
    resume: str | Path | None = None,
    *,
    components: TrainingComponents | None = None,
    device: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Trains ``config``'s method and returns the last evaluation metrics (empty if none ran).

    Args:
        config: the resolved configuration.
        work_dir: checkpoints (``epoch_N.pth``, ``latest.pth``), ``config.yaml``, ``log.jsonl``,
            TensorBoard events and ``metrics_epoch_N.json`` go here.
        resume: None (fresh), "auto" (``work_dir/latest.pth`` when present) or a checkpoint path
            to continue exactly (optimiser, schedule, scaler, RNG states, sampler position).
        components: factories for method, loaders and evaluator (default: the real ladet modules).
        device: "cpu" / "cuda" / None (CUDA when available).
        force: a fresh run into a work dir holding another run moves the old contents aside
            (``ladet.engine.work_dir``) instead of being refused.

    Raises:
        NonFiniteLossError: a loss term became NaN/inf (the step is not applied, nothing saved).
        CheckpointError: unreadable or mismatching resume / load_from checkpoint; on every rank
            when the ranks cannot resume from the same checkpoint (``engine/resume.py``).
    """
    context = init_distributed(device)
    run = _Run(config, Path(work_dir), components or TrainingComponents(), context)
    set_deterministic(config.deterministic)
    seed_everything(config.seed + context.rank)
    if run.components.check_data is not None:  # classes from the data + the data check, before step 0
        run.components.check_data(config, ("train", "val"), context.is_main)
    if resume is None:  # every rank refuses alike; only rank 0 moves the old files aside
        moved = prepare_fresh_work_dir(run.work_dir, force, move=context.is_main)
        barrier()
        if moved is not None:
            print(f"moved the earlier run's files of {run.work_dir} to {moved}", flush=True)
    if context.is_main:
        run.work_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporary_files(run.work_dir)
        dump_config(config, run.work_dir / "config.yaml")

    method = run.components.build_method(config, context.device).to(context.device)
    resume_path = agree_on_resume_path(resume, run.work_dir, context)  # rank 0 decides, all check
    if config.train.load_from and resume_path is None:
        load_initial_weights(method, config.train.load_from)
    model = wrap_for_training(method, config, context)

    base_lr = scaled_learning_rate(config.train, config.data.images_per_gpu * context.world_size)
    optimizer = build_optimizer(list(model.parameters()), config.train, base_lr)
    schedule = StepSchedule.from_config(config.train, base_lr)
    scaler = run.precision.grad_scaler()
    position = TrainingPosition()
    if resume_path is not None:
        position = restore_on_every_rank(resume_path, model, optimizer, scaler, context)
        if context.is_main:
            print(
                f"resumed from {resume_path} at epoch {position.epoch + 1}, iteration {position.global_iteration}"
            )

    # the logs tell this run's story: resumed, they are cut back to the resumed step; fresh, emptied
    keep_until = position.global_iteration if resume_path is not None else -1
    logger = RunLogger(run.work_dir, enabled=context.is_main, keep_until_step=keep_until)
    try:
        metrics = _run_epochs(run, model, optimizer, scaler, schedule, position, logger)
    finally:
        logger.close()
    barrier()  # no rank leaves (and tears the process group down) while another still writes
    return metrics


def _run_epochs(
    run: _Run,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule: StepSchedule,
    position: TrainingPosition,
    logger: RunLogger,
) -> dict[str, Any]:
    config, context = run.config, run.context
    method: Any = unwrap_model(model)  # a TrainingMethod (evaluation_detector, teacher_detector)
    teacher_metrics = _teacher_metrics(run, method, position.global_iteration == 0, logger)
    metrics: dict[str, Any] = {}
    exporter = (
        WeightsExporter(run.work_dir, config) if config.train.export_weights and context.is_main else None
    )
    for epoch in range(position.epoch, config.train.epochs):
        start_batch = position.iteration_in_epoch if epoch == position.epoch else 0
        loader = run.components.build_train_loader(
            config, context.rank, context.world_size, epoch, start_batch
        )
        iterations_in_epoch = _epoch_length(loader, start_batch, config.train.max_iters_per_epoch)
        settings = EpochSettings(
            epoch=epoch,
            num_epochs=config.train.epochs,
            iterations_in_epoch=iterations_in_epoch,
            precision=run.precision,
            grad_clip_norm=config.train.grad_clip_norm,
            log_interval=max(1, config.train.log_interval),
            checkpoint_every_iters=config.train.checkpoint_every_iters,
            iterations_after_epoch=(config.train.epochs - epoch - 1) * iterations_in_epoch,
        )
        position = TrainingPosition(epoch, start_batch, position.global_iteration)
        position = train_one_epoch(
            model,
            loader,
            optimizer,
            scaler,
            schedule,
            position,
            settings,
            context,
            logger,
            save_latest=lambda at: run.save(model, optimizer, scaler, at, ["latest.pth"]),
        )
        position = TrainingPosition(epoch + 1, 0, position.global_iteration)
        last_epoch = epoch + 1 == config.train.epochs
        names = ["latest.pth"]
        if last_epoch or (
            config.train.checkpoint_interval > 0 and (epoch + 1) % config.train.checkpoint_interval == 0
        ):
            names.insert(0, f"epoch_{epoch + 1}.pth")
        run.save(model, optimizer, scaler, position, names)
        interval = config.train.eval_interval
        if last_epoch or (interval > 0 and (epoch + 1) % interval == 0):
            broadcast_buffers(method)  # evaluate (and finish) with rank 0's BatchNorm statistics
            metrics = run.evaluate(method.evaluation_detector(), title=f"epoch {epoch + 1}")
            _record_evaluation(run, logger, epoch, position, metrics, teacher_metrics)
            if exporter is not None and context.is_main:
                exporter.after_evaluation(method.evaluation_detector(), metrics, epoch + 1, last_epoch)
    return metrics


def _record_evaluation(
    run: _Run,
    logger: RunLogger,
    epoch: int,
    position: TrainingPosition,
    metrics: dict[str, Any],
    teacher_metrics: dict[str, Any] | None,
) -> None:
    """Logs the metrics (teacher's next to them) and writes ``metrics_epoch_N.json`` (rank 0)."""
    values: dict[str, Any] = {"epoch": epoch + 1, **_scalar_metrics(metrics)}
    if teacher_metrics is not None:
        values.update({f"teacher_{key}": value for key, value in _scalar_metrics(teacher_metrics).items()})
    logger.log("eval", position.global_iteration, values)
    if not run.context.is_main:
        return
    if teacher_metrics is not None:
        print(_side_by_side(metrics, teacher_metrics), flush=True)
    report = {"epoch": epoch + 1, "iteration": position.global_iteration, "metrics": metrics_to_json(metrics)}
    if teacher_metrics is not None:
        report["teacher_metrics"] = metrics_to_json(teacher_metrics)
    write_json(run.work_dir / f"metrics_epoch_{epoch + 1}.json", report)
