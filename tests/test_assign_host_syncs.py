"""The PAA assignment needs a number of host synchronisations per batch that does not grow with the
GT count: counted on the CPU with ``tests/support/host_syncs.py``'s ``HostSyncCounter``, which sees
every operation that would make the host wait for a CUDA device."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from ladet.assign.paa import PAAAssigner
from ladet.config.schema import AssignerConfig
from ladet.models.box_coder import DeltaBoxCoder
from tests.support.assign_inputs import make_inputs
from tests.support.host_syncs import HostSyncCounter, count_assignment_syncs


def _count(operation) -> int:
    counter = HostSyncCounter()
    with counter.counting_conversions(), counter:
        operation()
    return sum(counter.counts.values())


@pytest.mark.parametrize("inference", [False, True])
def test_counter_counts_each_synchronising_operation_once(inference: bool) -> None:
    values = torch.tensor([1.0, 0.0, 2.0])
    repeats = torch.tensor([1, 2])
    synchronising = {
        "int": lambda: int(values.sum()),
        "float": lambda: float(values.sum()),
        "bool": lambda: bool(values.sum()),
        "item": lambda: values.sum().item(),
        "tolist": lambda: values.tolist(),
        "nonzero": lambda: torch.nonzero(values),
        "nonzero as_tuple": lambda: torch.nonzero(values, as_tuple=True),
        "boolean index": lambda: values[values > 0],
        "boolean index_put": lambda: values.clone().index_put_((values > 0,), torch.tensor(0.0)),
        "repeat_interleave": lambda: torch.repeat_interleave(repeats),
        "bincount": lambda: torch.bincount(repeats),
    }
    free = {
        "arithmetic": lambda: values * 2 + 1,
        "long index": lambda: values[torch.tensor([0, 2])],
        "repeat_interleave with output_size": lambda: torch.repeat_interleave(repeats, output_size=3),
        "sort": lambda: torch.sort(values),
        "scatter_reduce": lambda: torch.zeros(2).scatter_reduce_(0, repeats - 1, values[:2], "amax"),
    }
    with torch.inference_mode(inference):
        for name, operation in synchronising.items():
            assert _count(operation) == 1, name
        for name, operation in free.items():
            assert _count(operation) == 0, name


def _gmm_sync_bound(config: AssignerConfig, check_every: int = 4) -> int:
    """The EM loop: one sync per convergence check, one check every ``check_every`` iterations."""
    return math.ceil(config.gmm_max_iterations / check_every)


def test_assignment_host_syncs_do_not_grow_with_the_gt_count() -> None:
    torch.manual_seed(0)
    config = AssignerConfig()
    assigner = PAAAssigner(config, 80, DeltaBoxCoder())
    counts = {}
    for num_gts in (1, 5, 20, 50):
        outputs, grid, valid_mask, gt_boxes, gt_labels = make_inputs(num_gts, seed=num_gts)

        assign = functools.partial(assigner.assign, outputs, grid, valid_mask, gt_boxes, gt_labels)

        assign()  # warm-up
        counts[num_gts] = count_assignment_syncs(assign).counts
    outside_gmm = {num_gts: {k: v for k, v in c.items() if k != "gmm"} for num_gts, c in counts.items()}
    # Every stage but the EM loop: the same syncs for 1 and for 100 GTs in the batch.
    assert all(stages == outside_gmm[1] for stages in outside_gmm.values()), outside_gmm
    assert sum(outside_gmm[1].values()) <= 2, outside_gmm[1]  # box check, pre-positive list
    # The EM loop: per convergence check (bounded by max_iter), not per GT.
    for num_gts, stages in counts.items():
        assert 1 <= stages["gmm"] <= _gmm_sync_bound(config), (num_gts, stages)


def test_batch_with_an_empty_image_needs_no_more_syncs() -> None:
    assigner = PAAAssigner(AssignerConfig(), 80, DeltaBoxCoder())
    outputs, grid, valid_mask, gt_boxes, gt_labels = make_inputs(20, seed=3)
    assigner.assign(outputs, grid, valid_mask, gt_boxes, gt_labels)  # warm-up
    full = count_assignment_syncs(lambda: assigner.assign(outputs, grid, valid_mask, gt_boxes, gt_labels))
    gt_boxes[1], gt_labels[1] = gt_boxes[1][:0], gt_labels[1][:0]
    with_empty = count_assignment_syncs(
        lambda: assigner.assign(outputs, grid, valid_mask, gt_boxes, gt_labels)
    )
    outside_gmm = {k: v for k, v in full.counts.items() if k != "gmm"}
    assert {k: v for k, v in with_empty.counts.items() if k != "gmm"} == outside_gmm
    assert with_empty.counts["gmm"] <= _gmm_sync_bound(AssignerConfig())
