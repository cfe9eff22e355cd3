"""CocoEvaluator.gather() across 2 gloo processes equals a single-process evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.distributed as distributed
import torch.multiprocessing as multiprocessing

from ladet.evaluation import METRIC_NAMES, CocoEvaluator
from tests.support.coco_evaluation import make_synthetic_evaluation_set

NUM_IMAGES = 20


def _worker(rank: int, world_size: int, folder: str) -> None:
    distributed.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size
    )
    try:
        _, image_ids, detections, label_to_category_id = make_synthetic_evaluation_set(NUM_IMAGES, 30, seed=4)
        evaluator = CocoEvaluator(Path(folder) / "gt.json", label_to_category_id)
        shard = range(0, 12) if rank == 0 else range(10, NUM_IMAGES)  # images 10, 11 seen twice
        evaluator.add([image_ids[i] for i in shard], [detections[i] for i in shard])
        evaluator.gather()
        metrics = evaluator.summarize()
        with open(Path(folder) / f"rank{rank}.json", "w") as handle:
            json.dump({"metrics": metrics, "num_results": len(evaluator.results)}, handle)
    finally:
        distributed.destroy_process_group()


@pytest.mark.distributed
def test_gather_matches_single_process(tmp_path: Path) -> None:
    ground_truth, image_ids, detections, label_to_category_id = make_synthetic_evaluation_set(
        NUM_IMAGES, 30, seed=4
    )
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    single = CocoEvaluator(tmp_path / "gt.json", label_to_category_id)
    single.add(image_ids, detections)
    expected = single.summarize()
    multiprocessing.start_processes(
        _worker, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    for rank in range(2):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["num_results"] == NUM_IMAGES * 30
        for name in METRIC_NAMES:
            assert report["metrics"][name] == expected[name]
