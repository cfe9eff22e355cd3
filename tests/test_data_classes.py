"""Classes from the data: num_classes / class_names / category ids resolved from the dataset,
mismatches refused naming both, any category id (0 included) mapped to labels and back."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ladet.cli import main
from ladet.config.schema import Config
from ladet.data import build_dataset
from ladet.data.classes import resolve_classes
from ladet.evaluation.coco import detections_to_coco_results
from ladet.methods.teacher import NetworkMismatchError, load_teacher
from ladet.predictor import Predictor
from ladet.structures import Detections
from tests.methods_support import tiny_detector, tiny_model_config, write_network_files

CATEGORIES = [{"id": 17, "name": "truck"}, {"id": 0, "name": "person"}, {"id": 5, "name": "car"}]


def _write_dataset(folder: Path, categories: list[dict] = CATEGORIES) -> Config:
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(folder / "a.png")
    annotations = [
        {
            "id": index,
            "image_id": 1,
            "category_id": category["id"],
            "bbox": [4 + 10 * index, 4, 8, 8],
            "area": 64,
        }
        for index, category in enumerate(categories[:3])
    ]
    document = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
        "annotations": annotations,
        "categories": categories,
    }
    (folder / "a.json").write_text(json.dumps(document))
    config = Config()
    for split in (config.data.train, config.data.val):
        split.ann_file, split.image_dir = str(folder / "a.json"), str(folder)
    config.data.min_image_side = 8
    return config


def test_unset_classes_come_from_the_dataset_with_id_zero(tmp_path: Path) -> None:
    config = resolve_classes(_write_dataset(tmp_path))
    assert config.model.num_classes == 3
    assert config.class_names == ["person", "car", "truck"] and config.data.category_ids == [0, 5, 17]
    dataset = build_dataset(config, "train")
    assert dataset.records[0].labels.tolist() == [2, 0, 1]  # truck, person, car
    detections = Detections(torch.tensor([[0.0, 0, 8, 8]] * 3), torch.ones(3), torch.tensor([0, 1, 2]))
    results = detections_to_coco_results(1, detections, config.data.category_ids)
    assert [record["category_id"] for record in results] == [0, 5, 17]


def test_num_classes_that_disagrees_with_the_dataset_is_refused_naming_both(tmp_path: Path) -> None:
    """On main 5 classes on a 10-class set trained with labels >= 5 as background (AP 0)."""
    categories = [{"id": index, "name": f"c{index}"} for index in range(10)]
    config = _write_dataset(tmp_path, categories)
    config.model.num_classes = 5
    with pytest.raises(
        ValueError, match=r"model\.num_classes=5 but the dataset \(.*a\.json\) has 10 categories"
    ):
        resolve_classes(config)
    config.model.num_classes = 10
    config.class_names = [f"x{index}" for index in range(10)]
    with pytest.raises(ValueError, match=r"class_names \['x0'.*differ from the dataset's"):
        resolve_classes(config)


def test_train_with_a_labelme_style_mismatch_exits_before_training(tmp_path: Path, capsys) -> None:
    """labelme's 21 categories (ids from 0) with num_classes=20: refused, nothing written."""
    categories = [{"id": index, "name": f"label{index}"} for index in range(21)]
    config = _write_dataset(tmp_path, categories)
    config_file = tmp_path / "config.yaml"
    from ladet.config.loader import dump_config

    config.model.num_classes = 20
    config.model.backbone.weights = None
    dump_config(config, config_file)
    work_dir = tmp_path / "run"
    assert main(["train", str(config_file), "--work-dir", str(work_dir)]) == 2
    assert "model.num_classes=20 but the dataset" in capsys.readouterr().err
    assert not work_dir.exists()
    assert main(["check-data", str(config_file)]) == 2
    assert "has 21 categories" in capsys.readouterr().out


def test_predictor_carries_the_dataset_ids_and_names(tmp_path: Path) -> None:
    """On main a copied config with num_classes != the file's category count invented class_<i> names."""
    config = _write_dataset(tmp_path)
    predictor = Predictor(torch.nn.Identity(), config)
    assert predictor.category_ids == [0, 5, 17] and predictor.class_names == ["person", "car", "truck"]
    wrong = _write_dataset(tmp_path)
    wrong.model.num_classes = 2
    with pytest.raises(ValueError, match="model.num_classes=2 but the dataset"):
        Predictor(torch.nn.Identity(), wrong)


def test_teacher_class_count_is_checked_against_the_data(tmp_path: Path) -> None:
    student = resolve_classes(_write_dataset(tmp_path))  # 3 classes, from the data
    student_model = copy.deepcopy(tiny_model_config())
    student_model.num_classes = student.model.num_classes
    teacher = write_network_files(
        tmp_path, "teacher5", tiny_model_config(num_classes=5), tiny_detector(num_classes=5)
    )
    with pytest.raises(NetworkMismatchError, match=r"model\.num_classes: student 3 vs 5"):
        load_teacher(teacher, student_model, "cpu")
    unset = tiny_model_config()
    unset.num_classes = None  # a teacher config that leaves the classes to the data
    reference = write_network_files(tmp_path, "teacher_unset", unset, tiny_detector(num_classes=3))
    assert load_teacher(reference, student_model, "cpu").num_classes == 3
