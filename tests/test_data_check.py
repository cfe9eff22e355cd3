"""``ladet check-data`` and the check before step 0: every image opened, one summary table,
errors stop before any training, warnings are visible, skipped images are never evaluated."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ladet.cli import main
from ladet.config.schema import Config
from ladet.data import build_val_loader
from ladet.data.builtin import make_builtin_dataset
from ladet.data.check import check_data
from ladet.evaluation.coco import build_dataset_evaluator
from ladet.structures import Detections
from tests.cli_pipeline import write_tiny_config


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    make_builtin_dataset(folder, seed=2, num_train=4, num_val=2, image_size=(96, 128))
    return folder


def _break_train_images(data_dir: Path) -> None:
    train = data_dir / "train"
    (train / "000001.jpg").unlink()  # missing
    (train / "000002.jpg").write_bytes(b"")  # zero bytes
    content = (train / "000003.jpg").read_bytes()
    (train / "000003.jpg").write_bytes(content[: len(content) // 3])  # truncated
    with Image.open(train / "000004.jpg") as image:
        image.resize((image.width + 8, image.height)).save(train / "000004.jpg")  # wrong size


def _config(data_dir: Path, **data: object) -> Config:
    config = Config()
    config.model.num_classes = 12
    config.data.train.ann_file = str(data_dir / "annotations/train.json")
    config.data.train.image_dir = str(data_dir / "train")
    config.data.val.ann_file = str(data_dir / "annotations/val.json")
    config.data.val.image_dir = str(data_dir / "val")
    config.data.workers_per_gpu = 0
    config.data.max_size, config.data.short_size = 128, 96
    for key, value in data.items():
        setattr(config.data, key, value)
    return config


def test_check_data_prints_the_summary_and_exits_non_zero(data_dir: Path, tmp_path: Path, capsys) -> None:
    _break_train_images(data_dir)
    config = write_tiny_config(tmp_path, data_dir)
    assert main(["check-data", str(config)]) == 2
    printed = capsys.readouterr().out
    for description in (
        "image file missing",
        "image file has zero bytes",
        "image cannot be decoded",
        "image size differs from the annotation",
    ):
        row = next(line for line in printed.splitlines() if description in line)
        assert row.split()[:2] == ["1", "error"], row
    assert "000001.jpg does not exist" in printed
    assert re.search(r"000004\.jpg is \d+x\d+, the annotation says \d+x\d+", printed)
    assert "result: FAILED" in printed


def test_train_stops_before_step_zero_with_the_summary(data_dir: Path, tmp_path: Path, capsys) -> None:
    """On main the run started and died mid-epoch in the data loader; now nothing is trained."""
    _break_train_images(data_dir)
    config = write_tiny_config(tmp_path, data_dir)
    work_dir = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(work_dir)]) == 2
    error = capsys.readouterr().err
    assert "nothing was trained" in error and "image file missing" in error and "Traceback" not in error
    assert not work_dir.exists() or not list(work_dir.iterdir())


def test_check_data_on_a_clean_set_passes(data_dir: Path, tmp_path: Path, capsys) -> None:
    config = write_tiny_config(tmp_path, data_dir)
    assert main(["check-data", str(config), "data.check_threads=2"]) == 0
    printed = capsys.readouterr().out
    assert "result: OK" in printed and "image pass: 6 images" in printed


def test_image_pass_can_be_turned_off(data_dir: Path) -> None:
    _break_train_images(data_dir)
    report = check_data(_config(data_dir, check_images=False), ("train",), progress=False)
    assert report.errors() == [] and report.images_checked == 0


def test_skipped_unreadable_images_are_excluded_from_evaluation_never_substituted(data_dir: Path) -> None:
    """On main the next image was substituted and counted twice (a perfect detector scored < 1)."""
    documents = json.loads((data_dir / "annotations/val.json").read_text())
    broken = documents["images"][0]
    (data_dir / "val" / broken["file_name"]).write_bytes(b"\x00garbage")
    config = _config(data_dir, skip_unreadable_images=True, test_images_per_gpu=1)
    report = check_data(config, ("val",), progress=False)
    assert report.errors() == []
    assert report.splits["val"].problems.count("image_undecodable") == 1
    assert report.splits["val"].problems.action("image_undecodable") == "drop"
    loader = build_val_loader(config)
    evaluator = build_dataset_evaluator(config, loader.dataset)
    seen = []
    for batch in loader:  # a perfect detector: the ground truth as detections
        detections = [
            Detections(boxes, torch.ones(len(boxes)), labels)
            for boxes, labels in zip(batch.gt_boxes, batch.gt_labels, strict=True)
        ]
        scale = batch.scale_factors  # back to the original frame
        detections = [
            Detections(d.boxes / scale[i].repeat(2), d.scores, d.labels) for i, d in enumerate(detections)
        ]
        evaluator.add(list(batch.image_ids), detections)
        seen.extend(batch.image_ids)
    assert seen == [image["id"] for image in documents["images"][1:]]
    metrics = evaluator.summarize()
    assert metrics["AP"] == pytest.approx(1.0) and metrics["num_excluded_images"] == 1


def test_warnings_are_printed_at_warning_level_without_any_logging_set_up(data_dir: Path) -> None:
    """Dropped and clipped boxes used to be logged at INFO, which the CLI never shows."""
    path = data_dir / "annotations/train.json"
    document = json.loads(path.read_text())
    image = document["images"][0]
    box = next(a for a in document["annotations"] if a["image_id"] == image["id"])
    box["bbox"][2] = image["width"] + 25 - box["bbox"][0]  # partly outside: clipped
    path.write_text(json.dumps(document))
    script = (
        "import sys; from ladet.data.check import run_data_check; from tests.test_data_check import _config; "
        f"from pathlib import Path; run_data_check(_config(Path({str(data_dir)!r})), ('train',))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stderr.splitlines() if "box partly outside the image" in line)
    assert row.split()[:2] == ["1", "clip"]


def test_zero_area_on_every_box_keeps_every_box(data_dir: Path) -> None:
    """On main every box was dropped and the run failed with 'no usable images'."""
    from ladet.data import build_dataset

    path = data_dir / "annotations/train.json"
    document = json.loads(path.read_text())
    for annotation in document["annotations"]:
        annotation["area"] = 0
    path.write_text(json.dumps(document))
    dataset = build_dataset(_config(data_dir), "train")
    assert sum(len(record.boxes) for record in dataset.records) == len(document["annotations"])
    assert dataset.problems.count("area_not_positive") == len(document["annotations"])
    assert dataset.problems.action("area_not_positive") == "note"


def test_boxes_partly_outside_are_clipped_also_after_a_flip(tmp_path: Path) -> None:
    """On main x2 = 153 stayed on a 128 px image, and a flip made x1 = -25."""
    from ladet.data import build_dataset

    Image.fromarray(np.zeros((96, 128, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    document = {
        "images": [{"id": 5, "file_name": "a.png", "width": 128, "height": 96}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 1, "bbox": [100, 10, 53, 40], "area": 2120},
            {"id": 2, "image_id": 5, "category_id": 1, "bbox": [130, 10, 20, 20], "area": 400},  # outside
            {"id": 3, "image_id": 5, "category_id": 1, "bbox": [10, 10, 0.5, 20], "area": 10},  # degenerate
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(document))
    config = Config()
    config.model.num_classes = 1
    config.data.train.ann_file, config.data.train.image_dir = str(tmp_path / "a.json"), str(tmp_path)
    config.data.max_size, config.data.short_size, config.data.flip_prob = 128, 96, 1.0
    dataset = build_dataset(config, "train")
    assert dataset.records[0].boxes.tolist() == [[100.0, 10.0, 128.0, 50.0]]
    assert dataset[0]["boxes"].tolist() == [[0.0, 10.0, 28.0, 50.0]]  # flipped: x1 = 128 - 128
    counts = {
        kind: dataset.problems.count(kind) for kind in ("box_partly_outside", "box_outside", "box_degenerate")
    }
    assert counts == {"box_partly_outside": 1, "box_outside": 1, "box_degenerate": 1}
