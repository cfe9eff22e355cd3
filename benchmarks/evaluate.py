"""Benchmark: ladet CocoEvaluator (faster_coco_eval) vs pycocotools on the same files.

Synthetic ground truth for ``--images`` images and ``--detections`` detections per image (fixed
seed, ``tests.support.coco_evaluation``), written to a temporary folder. Timed sides:

* ladet: ``CocoEvaluator(gt.json)`` + ``add`` (Detections tensors -> COCO records) + ``summarize``;
* pycocotools: ``COCO(gt.json)`` + ``loadRes(results.json)`` (the records ladet wrote) +
  evaluate/accumulate/summarize.

Prints one line::

    images=5000 ladet_s=... pycocotools_s=... speedup=... identical=true

``identical`` = all 12 numbers exactly equal. Run from the repository root, as a module (it imports
``tests.support``): ``.venv/bin/python -m benchmarks.evaluate``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

from ladet.evaluation import METRIC_NAMES, CocoEvaluator
from tests.support.coco_evaluation import make_synthetic_evaluation_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground_truth, image_ids, detections, label_to_category_id = make_synthetic_evaluation_set(
        num_images=arguments.images, detections_per_image=arguments.detections, seed=arguments.seed
    )
    with tempfile.TemporaryDirectory() as folder:
        ann_file = Path(folder) / "gt.json"
        results_file = Path(folder) / "results.json"
        ann_file.write_text(json.dumps(ground_truth))

        start = time.perf_counter()
        evaluator = CocoEvaluator(ann_file, label_to_category_id)
        evaluator.add(image_ids, detections)
        metrics = evaluator.summarize()
        ladet_seconds = time.perf_counter() - start
        evaluator.write_results_json(results_file)

        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            reference_ground_truth = COCO(str(ann_file))
            reference_detections = reference_ground_truth.loadRes(str(results_file))
            evaluation = COCOeval(reference_ground_truth, reference_detections, "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        reference_seconds = time.perf_counter() - start

    identical = all(
        metrics[name] == float(value) for name, value in zip(METRIC_NAMES, evaluation.stats[:12], strict=True)
    )
    print(
        f"images={arguments.images} ladet_s={ladet_seconds:.2f} pycocotools_s={reference_seconds:.2f} "
        f"speedup={reference_seconds / ladet_seconds:.1f} identical={str(identical).lower()}"
    )


if __name__ == "__main__":
    main()
