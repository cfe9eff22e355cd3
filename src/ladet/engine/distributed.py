"""One code path for 1 or many processes: torchrun (env://) set-up, seeding and small collectives.

torchrun exports ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is a single
process. The backend is NCCL on CUDA (device ``cuda:LOCAL_RANK``) and Gloo on the CPU.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the run.

    Attributes:
        rank: global rank, 0 for a single process.
        world_size: number of processes.
        local_rank: rank on this machine (selects the CUDA device).
        device: the device this process computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _read_int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from error


def init_distributed(device: str | None = None) -> DistributedContext:
    """Joins the torchrun process group when ``WORLD_SIZE`` > 1, else returns a 1-process context.

    Args:
        device: "cpu", "cuda" or None (CUDA when available).
    """
    world_size = _read_int_env("WORLD_SIZE", 1)
    rank = _read_int_env("RANK", 0)
    local_rank = _read_int_env("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        compute_device = torch.device("cuda", local_rank)
    else:
        compute_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            dist.init_process_group(backend=backend, init_method="env://", device_id=compute_device)
        else:
            dist.init_process_group(backend=backend, init_method="env://")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=compute_device)


def shutdown_distributed() -> None:
    """Leaves the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Waits for every rank; a no-op for a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(value: Any) -> list[Any]:
    """Returns ``[value of rank 0, value of rank 1, ...]`` (a 1-element list for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, source_rank: int = 0) -> Any:
    """Returns the ``value`` of ``source_rank`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source_rank)
    return holder[0]


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Averages a tensor over ranks (returns it unchanged for a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    reduced = values.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / dist.get_world_size()


def broadcast_buffers(module: torch.nn.Module, source_rank: int = 0) -> None:
    """Copies every buffer (e.g. BatchNorm running statistics) of ``source_rank`` to all ranks.

    DDP syncs buffers at the start of each forward, so after the last training step each rank
    holds its own statistics; evaluating with them would make rank results inconsistent.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=source_rank)


def trains_batchnorm(module: torch.nn.Module) -> bool:
    """True when a BatchNorm layer of ``module`` updates its running statistics in train mode
    (``model.backbone.norm_eval: false``, or a second network whose BN is trained)."""
    was_training = module.training
    module.train()
    try:
        return any(
            isinstance(layer, torch.nn.modules.batchnorm._BatchNorm) and layer.training
            for layer in module.modules()
        )
    finally:
        module.train(was_training)


def use_sync_batchnorm(sync_bn: bool, batchnorm_trained: bool, context: DistributedContext) -> bool:
    """``train.sync_bn`` applies to CUDA runs on several processes whose BatchNorm is trained.

    Frozen BatchNorm (``norm_eval``) has nothing to synchronise; Gloo/CPU runs keep per-process
    BatchNorm (``nn.SyncBatchNorm`` computes on CUDA only).
    """
    return sync_bn and batchnorm_trained and context.is_distributed and context.device.type == "cuda"


def seed_everything(seed: int) -> None:
    """Seeds python ``random``, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Switches torch to deterministic algorithms (and cuBLAS to a deterministic workspace)."""
    if not enabled:
        return
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=False)


def capture_rng_states() -> dict[str, Any]:
    """The random generators' states as tensors and plain containers (``weights_only``-loadable)."""
    numpy_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]
    python_version, python_internal, python_gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(numpy_state[1], dtype=np.int64)),
            "position": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {"version": python_version, "internal": list(python_internal), "gauss": python_gauss},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_states`."""
    torch.set_rng_state(states["torch"].cpu())
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        cuda_states = states["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([state.cpu() for state in cuda_states])
