"""The `ladet` command line: predict/export/print-config/visualize-assign outputs and clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from cli_pipeline import make_tiny_pipeline
from PIL import Image

from ladet.cli import main
from ladet.config.loader import load_config
from ladet.export import example_input_size
from ladet.predictor import Predictor


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    enabled = torch.are_deterministic_algorithms_enabled()
    try:
        yield make_tiny_pipeline(tmp_path_factory.mktemp("cli"))
    finally:
        torch.use_deterministic_algorithms(enabled)


@pytest.mark.slow
def test_predict_writes_pictures_and_coco_results(pipeline, tmp_path) -> None:
    config, data_dir, work_dir = pipeline
    single = data_dir / "train" / "000001.jpg"
    code = main(
        [
            "predict",
            str(config),
            "--checkpoint",
            str(work_dir / "latest.pth"),
            str(data_dir / "val"),
            str(single),
            "--out",
            str(tmp_path),
            "--score-threshold",
            "0.01",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "000001.png",
        "000002.png",
    ]  # val 1, 2 and train 1
    with (
        Image.open(tmp_path / "000002.png") as picture,
        Image.open(data_dir / "val" / "000002.jpg") as original,
    ):
        # small images are enlarged by an integer factor so that tags stay readable (>= 512 px)
        factor = picture.size[0] // original.size[0]
        assert factor >= 1 and picture.size[0] == original.size[0] * factor
        assert picture.size[1] > original.size[1] * factor  # + the caption strip below the picture
        assert max(picture.size) >= 512
    results = json.loads((tmp_path / "results.json").read_text())
    assert results, "an untrained detector still scores some boxes above 0.01"
    # result ids are the dataset's image ids (not 1..N in file order)
    ids_by_file = {}
    for split in ("val", "train"):
        document = json.loads((data_dir / "annotations" / f"{split}.json").read_text())
        ids_by_file.update({str(data_dir / split / i["file_name"]): i["id"] for i in document["images"]})
    assert all(r["image_id"] == ids_by_file[r["file_name"]] for r in results)
    assert {r["file_name"] for r in results} <= {
        str(data_dir / "val" / "000001.jpg"),
        str(data_dir / "val" / "000002.jpg"),
        str(single),
    }
    assert all(r["score"] >= 0.01 and 1 <= r["category_id"] <= 12 and len(r["bbox"]) == 4 for r in results)
    # the JSON holds exactly the Predictor's detections above the threshold
    predictor = Predictor.from_checkpoint(config, work_dir / "latest.pth")
    detections = predictor(single)[0]
    expected = sorted(detections.scores[detections.scores >= 0.01].tolist())
    obtained = sorted(r["score"] for r in results if r["file_name"] == str(single))
    assert obtained == pytest.approx(expected, abs=1e-6)


def test_bad_config_key_exits_2_naming_the_key(pipeline, capsys) -> None:
    config, _, _ = pipeline
    assert main(["print-config", str(config), "train.epochz=3"]) == 2
    error = capsys.readouterr().err
    assert "train.epochz" in error and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1


def test_bad_key_through_the_real_entry_point_exits_2(pipeline, tmp_path) -> None:
    config, _, _ = pipeline
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ladet",
            "train",
            str(config),
            "--work-dir",
            str(tmp_path),
            "model.head.typo=1",
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "model.head.typo" in completed.stderr and "Traceback" not in completed.stderr


def test_missing_checkpoint_and_missing_image_exit_2(pipeline, tmp_path, capsys) -> None:
    config, data_dir, work_dir = pipeline
    assert (
        main(["test", str(config), "--checkpoint", str(tmp_path / "none.pth"), "--out", str(tmp_path)]) == 2
    )
    assert "none.pth" in capsys.readouterr().err
    code = main(
        [
            "predict",
            str(config),
            "--checkpoint",
            str(work_dir / "latest.pth"),
            str(tmp_path / "x.jpg"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2 and "x.jpg" in capsys.readouterr().err


def test_checkpoint_of_another_architecture_is_refused_with_key_lists(pipeline, tmp_path, capsys) -> None:
    config, _, work_dir = pipeline
    code = main(
        [
            "test",
            str(config),
            "--checkpoint",
            str(work_dir / "latest.pth"),
            "--out",
            str(tmp_path),
            "model.backbone.depth=34",
        ]
    )
    error = capsys.readouterr().err
    assert code == 2 and "latest.pth does not match the model architecture" in error
    # ResNet-34 has a third block in layer1, ResNet-18 has not
    assert "missing keys (96): backbone.layer1.2.bn1.bias" in error


def test_print_config_shows_resolved_values_with_overrides(pipeline, capsys) -> None:
    config, _, _ = pipeline
    assert main(["print-config", str(config), "train.epochs=5", "model.backbone.depth=34"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 5 and printed["model"]["backbone"]["depth"] == 34
    assert printed["model"]["num_classes"] == 12 and printed["data"]["short_size"] == 96


@pytest.mark.slow
def test_export_weights_and_torchscript_reproduce_the_detector(pipeline, tmp_path) -> None:
    config, data_dir, work_dir = pipeline
    weights = tmp_path / "student.pth"
    assert (
        main(["export", str(config), "--checkpoint", str(work_dir / "latest.pth"), "--out", str(weights)])
        == 0
    )
    exported = torch.load(weights, weights_only=True)
    assert exported["exported"] is True and exported["config"]["method"]["name"] == "baseline"
    image = data_dir / "val" / "000001.jpg"
    original = Predictor.from_checkpoint(config, work_dir / "latest.pth")
    reloaded = Predictor.from_checkpoint(config, weights)
    first, second = original(image)[0], reloaded(image)[0]
    assert torch.equal(first.boxes, second.boxes) and torch.equal(first.scores, second.scores)
    traced_path = tmp_path / "student.ts"
    assert (
        main(
            [
                "export",
                str(config),
                "--checkpoint",
                str(work_dir / "latest.pth"),
                "--out",
                str(traced_path),
                "--torchscript",
            ]
        )
        == 0
    )
    traced = torch.jit.load(str(traced_path))
    height, width = example_input_size(load_config(config))
    images = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        eager = original.detector(images)
        class_scores, box_deltas, iou_logits = traced(images)
    assert torch.allclose(class_scores, eager.class_scores, atol=1e-5)
    assert torch.allclose(box_deltas, eager.box_deltas, atol=1e-5)
    assert torch.allclose(iou_logits, eager.iou_logits, atol=1e-5)


@pytest.mark.slow
def test_visualize_assign_writes_one_picture_per_image(pipeline, tmp_path) -> None:
    config, data_dir, work_dir = pipeline
    code = main(
        [
            "visualize-assign",
            str(config),
            "--checkpoint",
            str(work_dir / "latest.pth"),
            str(data_dir / "val" / "000001.jpg"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert [p.name for p in tmp_path.glob("*.png")] == ["000001_assign.png"]


@pytest.mark.slow
def test_colad_export_and_test_use_the_evaluated_second_network(pipeline, tmp_path) -> None:
    config, _, _ = pipeline
    second = tmp_path / "second.yaml"
    second.write_text(
        f"_base_: {config}\nmodel:\n  head: {{type: cop}}\n  loss: {{box_loss_weighting: mean}}\n"
    )
    colad = [
        "method.name=colad",
        f"method.colad.second_network.config={second}",
        "method.colad.evaluate_network=second",
    ]
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(config),
                "--work-dir",
                str(run),
                *colad,
                "train.epochs=1",
                "train.lr_steps=[]",
                "train.max_iters_per_epoch=1",
                "train.eval_interval=0",
            ]
        )
        == 0
    )
    checkpoint = torch.load(run / "latest.pth", weights_only=True)
    assert {key.split(".")[0] for key in checkpoint["model"]} == {"detector", "second_detector"}
    exported_path = tmp_path / "student.pth"
    assert (
        main(
            [
                "export",
                str(config),
                "--checkpoint",
                str(run / "latest.pth"),
                "--out",
                str(exported_path),
                *colad,
            ]
        )
        == 0
    )
    exported = torch.load(exported_path, weights_only=True)
    expected = {
        key.replace("second_detector.", "detector.", 1): value
        for key, value in checkpoint["model"].items()
        if key.startswith("second_detector.")
    }
    assert exported["model"].keys() == expected.keys()
    assert all(torch.equal(exported["model"][key], expected[key]) for key in expected)
    assert exported["config"]["model"]["head"]["type"] == "cop"
    # test on the training checkpoint, on the export, and on the export with the second config alone
    outputs = []
    for index, arguments in enumerate(
        (
            [str(config), "--checkpoint", str(run / "latest.pth"), *colad],
            [str(config), "--checkpoint", str(exported_path), *colad],
            [str(second), "--checkpoint", str(exported_path)],
        )
    ):
        out = tmp_path / f"test{index}"
        assert main(["test", *arguments[:3], "--out", str(out), *arguments[3:]]) == 0
        outputs.append(json.loads((out / "results.json").read_text()))
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0], "the untrained network still emits detections above the 0.05 test threshold"


def test_missing_annotation_file_exits_2_naming_it(pipeline, tmp_path, capsys) -> None:
    config, _, work_dir = pipeline
    missing = tmp_path / "no_such_annotations.json"
    code = main(
        [
            "test",
            str(config),
            "--checkpoint",
            str(work_dir / "latest.pth"),
            "--out",
            str(tmp_path),
            f"data.val.ann_file={missing}",
        ]
    )
    error = capsys.readouterr().err
    assert code == 2 and "no_such_annotations.json" in error and "Traceback" not in error


def test_diverging_training_exits_1_with_the_message(pipeline, tmp_path, capsys, monkeypatch) -> None:
    import ladet.engine
    from ladet.engine import NonFiniteLossError

    def diverging_train(*arguments, **keywords):  # noqa: ANN002, ANN003, ANN202
        raise NonFiniteLossError(
            "non-finite loss at iteration 7 (epoch 1, batch 7 of the epoch): loss_cls=nan"
        )

    monkeypatch.setattr(ladet.engine, "train", diverging_train)
    config, _, _ = pipeline
    assert main(["train", str(config), "--work-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "training stopped: non-finite loss at iteration 7" in error and "Traceback" not in error


def test_reproduce_subcommand_hands_its_options_to_the_reproduction(monkeypatch) -> None:
    import ladet.reproduce
    from ladet.cli import main

    received: list[list[str]] = []
    monkeypatch.setattr(ladet.reproduce, "main", lambda argv: received.append(list(argv)) or 0)
    assert main(["reproduce", "--budget", "smoke", "--seeds", "0", "1"]) == 0
    assert received == [["--budget", "smoke", "--seeds", "0", "1"]]
