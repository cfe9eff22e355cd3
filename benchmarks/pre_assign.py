"""Benchmark: the IoU pre-assignment alone (``ladet.assign.max_iou.pre_assign``), window vs dense path.

Same inputs as ``benchmarks/assign.py`` (two 800x1333 images, 22 400 anchors each, random
COCO-like GTs, fixed seeds), one CPU thread, under ``torch.inference_mode`` (as inside
``PAAAssigner``). Prints one line per GT count::

    gts=20 pre_positives=7480 window_ms=0.99 dense_ms=11.88

Times are CPU milliseconds of this process (``time.process_time``), median of ``--repeats`` runs
after a warm-up (the line above: shared 2-core dev machine under load, 2026-12-01). The window
path is checked to give the dense path's answer (every field).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pre_assign.py [--repeats 50] [--gts 5 20 50]``
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from assign import make_inputs  # noqa: E402

from ladet.assign.max_iou import PreAssignment, pre_assign  # noqa: E402

# Every tensor field of a PreAssignment (both paths must agree on all of them).
PRE_ASSIGNMENT_FIELDS = tuple(
    field.name for field in dataclasses.fields(PreAssignment) if field.type in ("Tensor", Tensor)
)


def median_ms(function, repeats: int) -> float:
    function()  # warm-up (also builds the cached grid tables)
    timings = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        timings.append(time.process_time() - start)
    return 1e3 * statistics.median(timings)


def run(num_gts: int, repeats: int) -> str:
    _outputs, grid, valid_mask, gt_boxes, gt_labels = make_inputs(num_gts, 0)

    def window() -> PreAssignment:
        return pre_assign(
            grid.anchors,
            valid_mask,
            gt_boxes,
            gt_labels,
            0.1,
            grid.level_index,
            level_sizes=grid.level_sizes,
            strides=grid.strides,
        )

    def dense() -> PreAssignment:
        return pre_assign(grid.anchors, valid_mask, gt_boxes, gt_labels, 0.1, grid.level_index, 5)

    with torch.inference_mode():
        fast, slow = window(), dense()
        for field in PRE_ASSIGNMENT_FIELDS:
            if not torch.equal(getattr(fast, field), getattr(slow, field)):
                raise AssertionError(f"window and dense paths differ in {field}")
        window_ms = median_ms(window, repeats)
        dense_ms = median_ms(dense, max(1, repeats // 10))
    return (
        f"gts={num_gts} pre_positives={fast.num_pre_positives} "
        f"window_ms={window_ms:.2f} dense_ms={dense_ms:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gts", type=int, nargs="+", default=[5, 20, 50], help="GTs per image")
    parser.add_argument("--repeats", type=int, default=50)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    for num_gts in arguments.gts:
        print(run(num_gts, arguments.repeats), flush=True)


if __name__ == "__main__":
    main()
