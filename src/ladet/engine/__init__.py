"""Training engine: the run (``train``), one epoch, evaluation, checkpoints and distributed set-up."""

from ladet.engine.checkpointing import TrainingPosition, resolve_resume_path
from ladet.engine.components import TrainingComponents
from ladet.engine.distributed import DistributedContext, init_distributed
from ladet.engine.evaluate import evaluate
from ladet.engine.loop import NonFiniteLossError
from ladet.engine.schedule import StepSchedule, scaled_learning_rate
from ladet.engine.trainer import train

__all__ = [
    "DistributedContext",
    "NonFiniteLossError",
    "StepSchedule",
    "TrainingComponents",
    "TrainingPosition",
    "evaluate",
    "init_distributed",
    "resolve_resume_path",
    "scaled_learning_rate",
    "train",
]
