"""Counting host synchronisations and eager operations of a computation on the CPU (used by
``benchmarks/host_syncs.py`` and ``tests/test_assign_host_syncs.py``).

On a CUDA device a host sync is every operation whose result the host must read before it can go
on: a data-dependent output size (``nonzero``, boolean indexing, ``repeat_interleave`` without
``output_size``, ``bincount``, ``unique``), a Python number from a tensor (``item``, ``int(t)``,
``bool(t)``, ``tolist``) or a copy to the CPU. :class:`HostSyncCounter`, a ``TorchDispatchMode``,
counts the aten operations that synchronise on CUDA, plus the Python-number conversions of tensors
(``int(t)``, ``tolist``, ..., wrapped on ``torch.Tensor`` because for CPU and inference tensors they
need not dispatch): what would synchronise on CUDA, counted on the CPU.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Operations that make the host wait for the device on CUDA whatever their arguments.
_ALWAYS_SYNCHRONISING = {
    aten._local_scalar_dense,  # item(), int(t), float(t), bool(t)
    aten.nonzero,
    aten.nonzero_numpy,  # nonzero(as_tuple=True) in inference mode
    aten.masked_select,
    aten.bincount,  # reads the maximum to size its output
    aten._unique2,
    aten.unique_consecutive,
    aten.unique_dim,
    aten.equal,
    aten.is_nonzero,
}


def _has_boolean_index(indices: Any) -> bool:
    return any(
        isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8)
        for index in indices or ()
    )


def is_synchronising(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether the aten call ``func(*args, **kwargs)`` synchronises the host on CUDA."""
    packet = func.overloadpacket
    if packet in _ALWAYS_SYNCHRONISING:
        return True
    if packet in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_):
        return _has_boolean_index(args[1] if len(args) > 1 else kwargs.get("indices"))
    if func is aten.repeat_interleave.Tensor:  # repeats -> indices: the size is sum(repeats)
        return kwargs.get("output_size") is None
    if packet in (aten._to_copy, aten.copy_):
        source = args[0] if packet is aten._to_copy else args[1]
        target_device = kwargs.get("device") if packet is aten._to_copy else args[0].device
        return (
            isinstance(source, torch.Tensor)
            and source.device.type != "cpu"
            and target_device is not None
            and torch.device(target_device).type == "cpu"
        )
    return False


class HostSyncCounter(TorchDispatchMode):
    """Counts the operations that would synchronise the host on CUDA, per ``stage`` label.

    Example::

        counter = HostSyncCounter()
        with counter:
            torch.nonzero(torch.ones(3))
        counter.counts  # Counter({'other': 1})
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()  # "stage: aten op" -> count, for reports
        self.num_operations = 0  # every aten operation, synchronising or not
        self.stage = "other"
        self.conversion_depth = 0  # > 0 inside a counted Python-number conversion

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        self.num_operations += 1
        if self.conversion_depth == 0 and is_synchronising(func, args, kwargs):
            self.record(str(func.overloadpacket.__name__))
        return func(*args, **kwargs)

    def record(self, name: str) -> None:
        self.counts[self.stage] += 1
        self.operations[f"{self.stage}: {name}"] += 1

    @contextlib.contextmanager
    def counting_conversions(self) -> Iterator[None]:
        """Counts Python-number conversions (``int(t)``, ``bool(t)``, ``item``, ``tolist``, ...).

        They are wrapped on ``torch.Tensor`` because for CPU tensors ``tolist`` reads the data
        without dispatching, and for inference tensors ``int(t)`` / ``item`` reach no dispatch mode
        either. Each conversion counts once (a ``_local_scalar_dense`` it dispatches is not counted
        again).
        """
        names = ("__int__", "__index__", "__float__", "__bool__", "item", "tolist")
        originals = {name: getattr(torch.Tensor, name) for name in names}

        def counted(name: str, original: Callable) -> Callable:
            def conversion(tensor: torch.Tensor, *args: Any) -> Any:
                if self.conversion_depth == 0:
                    self.record(name.strip("_"))
                self.conversion_depth += 1
                try:
                    return original(tensor, *args)
                finally:
                    self.conversion_depth -= 1

            return conversion

        for name, original in originals.items():
            setattr(torch.Tensor, name, counted(name, original))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(torch.Tensor, name, original)

    @contextlib.contextmanager
    def in_stage(self, name: str) -> Iterator[None]:
        previous, self.stage = self.stage, name
        try:
            yield
        finally:
            self.stage = previous


def _staged(counter: HostSyncCounter, name: str, function: Callable) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with counter.in_stage(name):
            return function(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def stage_labels(counter: HostSyncCounter) -> Iterator[None]:
    """Labels the counts by the assignment stage they come from (pre_assign, costs, ...)."""
    import ladet.assign.paa as paa_module

    replaced = {
        (paa_module, "pre_assign"): "pre_assign",
        (paa_module, "anchor_costs"): "costs",
        (paa_module, "build_candidate_rows"): "candidate_rows",
        (paa_module, "fit_two_component_gmm"): "gmm",
        (paa_module, "build_result"): "build_result",
    }
    originals = {key: getattr(*key) for key in replaced if hasattr(*key)}
    for (module, attribute), name in replaced.items():
        if (module, attribute) in originals:
            setattr(module, attribute, _staged(counter, name, originals[module, attribute]))
    try:
        yield
    finally:
        for (module, attribute), function in originals.items():
            setattr(module, attribute, function)


def count_assignment_syncs(assign: Callable[[], Any]) -> HostSyncCounter:
    """Runs ``assign()`` once under a :class:`HostSyncCounter` with stage labels; returns the counter."""
    counter = HostSyncCounter()
    with stage_labels(counter), counter.counting_conversions(), counter:
        assign()
    return counter


def count_cuda_sync_warnings(assign: Callable[[], Any]) -> int:
    """CUDA only: the number of synchronising calls ``torch.cuda.set_sync_debug_mode`` reports."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            assign()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)
