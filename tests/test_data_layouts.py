"""Pascal VOC and YOLO layouts: same records as COCO (round trip), same checks, same metrics,
and all three layouts train and evaluate through ``ladet train``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ladet.cli import main
from ladet.data.coco import read_coco
from ladet.data.records import DatasetAnnotations
from ladet.data.voc import read_voc
from ladet.data.yolo import read_class_names_file, read_yolo
from ladet.evaluation.coco import CocoEvaluator
from ladet.structures import Detections
from tests.cli_pipeline import REPOSITORY
from tests.support.layouts import write_voc, write_yolo, zero_based_document

NAMES = ["cat", "dog", "bird"]


def _document() -> dict:
    """Category ids 0..2 (VOC/YOLO ids); one box partly outside, one crowd, one image without boxes."""
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.jpg", "width": 80, "height": 64},
        {"id": 3, "file_name": "c.jpg", "width": 40, "height": 40},
    ]
    annotations = [
        {"id": 0, "image_id": 1, "category_id": 0, "bbox": [4, 5, 20, 10], "area": 200, "iscrowd": 0},
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [50, 30, 20, 10], "area": 200, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 0, "bbox": [40, 2, 12, 12], "area": 144, "iscrowd": 1},
    ]
    categories = [{"id": index, "name": name} for index, name in enumerate(NAMES)]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.fixture()
def coco_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "coco"
    folder.mkdir()
    document = _document()
    (folder / "train.json").write_text(json.dumps(document))
    rng = np.random.default_rng(0)
    for image in document["images"]:
        array = rng.integers(0, 256, (image["height"], image["width"], 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / image["file_name"], quality=95)
    return folder


def _comparable(annotations: DatasetAnnotations, with_ignore: bool) -> list[tuple]:
    rows = []
    for record in annotations.records:
        row = (
            record.image_id,
            record.width,
            record.height,
            record.boxes.round(3).tolist(),
            record.labels.tolist(),
        )
        if with_ignore:
            row = (*row, record.ignore_boxes.round(3).tolist(), record.ignore_labels.tolist())
        rows.append(row)
    return rows


def test_round_trip_coco_to_voc_and_yolo_gives_the_same_records(coco_folder: Path, tmp_path: Path) -> None:
    document = _document()
    coco = read_coco(coco_folder / "train.json", coco_folder, train=False)
    assert coco.records[0].boxes.tolist() == [[4, 5, 24, 15], [50, 30, 64, 40]]  # x2 = 70 clipped to 64
    list_file = write_voc(document, coco_folder, tmp_path / "VOC", "train", NAMES)
    voc = read_voc(list_file, tmp_path / "VOC" / "JPEGImages", NAMES, train=False)
    assert _comparable(voc, with_ignore=True) == _comparable(coco, with_ignore=True)
    data_yaml = write_yolo(document, coco_folder, tmp_path / "yolo", "train", NAMES)
    names = read_class_names_file(data_yaml)
    assert names == NAMES
    yolo = read_yolo(tmp_path / "yolo" / "images" / "train", None, names, train=False)
    assert _comparable(yolo, with_ignore=False) == [row[:5] for row in _comparable(coco, with_ignore=False)]
    for parsed in (coco, voc, yolo):
        assert parsed.category_ids == [0, 1, 2] and parsed.class_names == NAMES
        assert parsed.problems.count("box_partly_outside") == 1
    assert voc.problems.count("box_crowd") == 1  # VOC difficult = COCO crowd
    training = read_voc(list_file, tmp_path / "VOC" / "JPEGImages", NAMES, train=True)
    assert [record.image_id for record in training.records] == [1, 2]
    assert training.problems.count("image_without_boxes") == 1


def test_voc_and_yolo_errors_name_the_file(coco_folder: Path, tmp_path: Path) -> None:
    document = _document()
    list_file = write_voc(document, coco_folder, tmp_path / "VOC", "train", NAMES)
    with pytest.raises(ValueError, match=r"000001\.xml object #0: class 'cat' is not in the class list"):
        read_voc(list_file, tmp_path / "VOC" / "JPEGImages", ["dog", "bird"], train=False)
    write_yolo(document, coco_folder, tmp_path / "yolo", "train", NAMES)
    label = tmp_path / "yolo" / "labels" / "train" / "000002.txt"
    label.write_text("1 0.5 0.5 0.2\n")
    with pytest.raises(ValueError, match=r"000002\.txt:1: expected 5 numbers"):
        read_yolo(tmp_path / "yolo" / "images" / "train", None, NAMES, train=False)
    label.write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ValueError, match=r"000002\.txt:1: class 7 is not in 0\.\.2"):
        read_yolo(tmp_path / "yolo" / "images" / "train", None, NAMES, train=False)
    with pytest.raises(ValueError, match="class_names_file"):
        read_yolo(tmp_path / "yolo" / "images" / "train", None, [], train=False)


def test_voc_difficult_boxes_are_ignore_regions_in_the_coco_metrics(
    coco_folder: Path, tmp_path: Path
) -> None:
    list_file = write_voc(_document(), coco_folder, tmp_path / "VOC", "val", NAMES)
    voc = read_voc(list_file, tmp_path / "VOC" / "JPEGImages", NAMES, train=False)
    evaluator = CocoEvaluator(voc.coco_document(), voc.category_ids, voc.class_names)
    for record in voc.records:  # a perfect detector that also finds the difficult object
        boxes = np.concatenate([record.boxes, record.ignore_boxes])
        labels = np.concatenate([record.labels, record.ignore_labels])
        detections = Detections(torch.from_numpy(boxes), torch.ones(len(boxes)), torch.from_numpy(labels))
        evaluator.add([record.image_id], [detections])
    metrics = evaluator.summarize()
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)


def _tiny_config(root: Path, data_lines: str) -> Path:
    config = root / "layout.yaml"
    config.write_text(
        f"""_base_: {REPOSITORY / "configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml"}
model:
  head: {{num_convs: 1}}
data:
{data_lines}
  images_per_gpu: 2
  workers_per_gpu: 0
  test_images_per_gpu: 2
  max_size: 128
  short_size: 96
train: {{optimizer: sgd, lr: 0.01, epochs: 1, lr_steps: [], warmup_iters: 2, max_iters_per_epoch: 2, log_interval: 1}}
""",
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize("layout", ["coco", "voc", "yolo"])
def test_each_layout_trains_and_evaluates(tmp_path: Path, layout: str) -> None:
    from ladet.data.builtin import make_builtin_dataset

    torch.set_num_threads(1)
    paths = make_builtin_dataset(tmp_path / "builtin", seed=1, num_train=4, num_val=2, image_size=(96, 128))
    source = tmp_path / "builtin"
    if layout == "coco":
        lines = (
            f"  train: {{ann_file: {paths['train_ann_file']}, image_dir: {paths['train_image_dir']}}}\n"
            f"  val: {{ann_file: {paths['val_ann_file']}, image_dir: {paths['val_image_dir']}}}\n"
        )
    else:
        for split in ("train", "val"):
            document, names = zero_based_document(json.loads(Path(paths[f"{split}_ann_file"]).read_text()))
            image_dir = Path(paths[f"{split}_image_dir"])
            if layout == "voc":
                write_voc(document, image_dir, tmp_path / "VOC", split, names)
            else:
                write_yolo(document, image_dir, tmp_path / "yolo", split, names)
        if layout == "voc":
            (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
            root = tmp_path / "VOC"
            lines = (
                f"  format: voc\n  class_names_file: {tmp_path / 'classes.txt'}\n"
                f"  train: {{ann_file: {root / 'ImageSets/Main/train.txt'}, image_dir: {root / 'JPEGImages'}}}\n"
                f"  val: {{ann_file: {root / 'ImageSets/Main/val.txt'}, image_dir: {root / 'JPEGImages'}}}\n"
            )
        else:
            root = tmp_path / "yolo"
            lines = (
                f"  format: yolo\n  class_names_file: {root / 'data.yaml'}\n"
                f"  train: {{ann_file: '', image_dir: {root / 'images/train'}}}\n"
                f"  val: {{ann_file: '', image_dir: {root / 'images/val'}}}\n"
            )
    assert source.is_dir()
    config = _tiny_config(tmp_path, lines)
    work_dir = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(work_dir), "--deterministic"]) == 0
    report = json.loads((work_dir / "metrics_epoch_1.json").read_text())
    metrics = report["metrics"]
    assert metrics["num_images"] == 2 and 0.0 <= metrics["AP"] <= 1.0
    assert len(metrics["per_class_AP"]) == 12
    assert (work_dir / "latest.pth").is_file()
