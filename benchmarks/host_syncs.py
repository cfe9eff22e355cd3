"""Host synchronisations and eager operations of the PAA assignment per batch, by stage, for 5 / 20 /
50 GTs per image.

The assignment must need a number of host synchronisations per batch that does not grow with the
GT count. On a CUDA device a host sync is every operation whose result the host must read before
it can go on: a data-dependent output size (``nonzero``, boolean indexing,
``repeat_interleave`` without ``output_size``, ``bincount``, ``unique``), a Python number from a
tensor (``item``, ``int(t)``, ``bool(t)``, ``tolist``) or a copy to the CPU.

Two ways of counting:

* ``--device cpu`` (default, any machine): :class:`HostSyncCounter`, a ``TorchDispatchMode`` that
  counts the aten operations that synchronise on CUDA, plus the Python-number conversions of
  tensors (``int(t)``, ``tolist``, ..., wrapped on ``torch.Tensor`` because for CPU and inference
  tensors they need not dispatch). It counts what would synchronise on CUDA, on the CPU.
* ``--device cuda``: additionally ``torch.cuda.set_sync_debug_mode("warn")``, which makes the CUDA
  runtime warn at every synchronising call; the warnings are counted.

The same dispatch mode (``tests/support/host_syncs.py``) counts every eager aten operation of one ``PAAAssigner.assign`` call
(``ops``: on CUDA each is at least one kernel launch). Prints one line per GT count::

    gts=20 ops=1015 syncs_total=9 pre_assign=2 costs=0 candidate_rows=0 gmm=7 build_result=0 other=0 cuda_warnings=n/a

``gmm`` is the number of EM convergence checks (one every ``check_every`` iterations until the
slowest row has stopped, at most ``max_iter / check_every``): it depends on the data, not on the GT
count; every other stage is a constant.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.host_syncs [--gts 5 20 50] [--device cuda]``
"""

from __future__ import annotations

import argparse
import functools

import torch

from tests.support.host_syncs import count_assignment_syncs, count_cuda_sync_warnings


def main() -> None:
    from ladet.assign.paa import PAAAssigner
    from ladet.config.schema import AssignerConfig
    from ladet.models.box_coder import DeltaBoxCoder
    from tests.support.assign_inputs import make_inputs

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gts", type=int, nargs="+", default=[5, 20, 50], help="GTs per image")
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(arguments.device)
    for num_gts in arguments.gts:
        outputs, grid, valid_mask, gt_boxes, gt_labels = make_inputs(num_gts, seed=0)
        if device.type != "cpu":
            outputs = type(outputs)(
                class_scores=outputs.class_scores.to(device),
                box_deltas=outputs.box_deltas.to(device),
                iou_logits=None,
                level_sizes=outputs.level_sizes,
            )
            grid = grid.to(device)
            valid_mask = valid_mask.to(device)
            gt_boxes = [boxes.to(device) for boxes in gt_boxes]
            gt_labels = [labels.to(device) for labels in gt_labels]
        assigner = PAAAssigner(AssignerConfig(), 80, DeltaBoxCoder())

        assign = functools.partial(assigner.assign, outputs, grid, valid_mask, gt_boxes, gt_labels)

        assign()  # warm-up
        counter = count_assignment_syncs(assign)
        cuda_warnings = count_cuda_sync_warnings(assign) if device.type == "cuda" else "n/a"
        stages = " ".join(
            f"{name}={counter.counts[name]}"
            for name in ("pre_assign", "costs", "candidate_rows", "gmm", "build_result", "other")
        )
        print(
            f"gts={num_gts} ops={counter.num_operations} syncs_total={sum(counter.counts.values())} {stages} "
            f"cuda_warnings={cuda_warnings}"
        )
        print("    " + ", ".join(f"{name} x{count}" for name, count in sorted(counter.operations.items())))


if __name__ == "__main__":
    main()
