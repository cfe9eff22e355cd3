"""End-to-end ONNX export of a short-trained PAA student: parity with the PyTorch Predictor, dynamic
shapes (a second input size, batch 2), metadata, the CLI (export + predict --onnx) and clean errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from cli_pipeline import make_tiny_pipeline
from PIL import Image

from ladet.cli import main
from ladet.config.loader import load_config
from ladet.deploy import MetadataError, OnnxPredictor
from ladet.export.onnx_export import ONNX_OPSET
from ladet.predictor import Predictor
from tests.support.onnx_parity import assert_parity, coco_ap, val_images, with_input_size


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path, Path]]:
    """(config, data dir, checkpoint, model.onnx): the tiny pipeline's checkpoint exported once by the CLI."""
    enabled = torch.are_deterministic_algorithms_enabled()
    try:
        config, data_dir, work_dir = make_tiny_pipeline(tmp_path_factory.mktemp("onnx_cli"))
        model = tmp_path_factory.mktemp("onnx") / "model.onnx"
        checkpoint = work_dir / "latest.pth"
        code = main(
            ["export", str(config), "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(model)]
        )
        assert code == 0 and model.is_file()
        yield config, data_dir, checkpoint, model
    finally:
        torch.use_deterministic_algorithms(enabled)


@pytest.mark.slow
def test_onnx_runtime_matches_predictor_on_val_images(exported) -> None:
    config_path, _, checkpoint, model = exported
    config = load_config(config_path)
    images, image_ids = val_images(config)
    torch_predictor = Predictor.from_checkpoint(config, checkpoint)
    onnx_predictor = OnnxPredictor(model)
    expected, actual = torch_predictor(images), onnx_predictor(images)
    assert_parity(expected, actual)
    assert sum(len(d.scores) for d in actual) > 0, "the short-trained student detects something"
    ap_torch = coco_ap(config, image_ids, expected, torch_predictor.category_ids)
    ap_onnx = coco_ap(config, image_ids, actual, onnx_predictor.category_ids)
    assert abs(ap_torch - ap_onnx) <= 0.1
    assert onnx_predictor.class_names == torch_predictor.class_names


@pytest.mark.slow
def test_dynamic_shapes_second_input_size_and_batch_of_two(exported) -> None:
    config_path, _, checkpoint, model = exported
    config = load_config(config_path)
    images, _ = val_images(config)
    # a second test size: 160-px short side (other padded shapes, other level sizes than the trace)
    resized_config, onnx_predictor = with_input_size(
        config, OnnxPredictor(model), short_size=160, max_size=224
    )
    assert_parity(Predictor.from_checkpoint(resized_config, checkpoint)(images), onnx_predictor(images))
    # batch 2 of images with different sizes: padding to the batch maximum inside the graph input
    torch_predictor = Predictor.from_checkpoint(config, checkpoint)
    torch_predictor.batch_size = 2
    batched = OnnxPredictor(model, batch_size=2)
    pair = [images[0], images[1]]
    assert Image.open(pair[0]).size != Image.open(pair[1]).size
    assert_parity(torch_predictor(pair), batched(pair))
    # the same images one at a time give the same detections as in the batch
    single = OnnxPredictor(model)
    for alone, together in zip(single(pair), batched(pair), strict=True):
        assert np.array_equal(alone.labels, together.labels)
        assert np.allclose(alone.scores, together.scores, atol=1e-5)


def test_graph_signature_and_metadata(exported) -> None:
    _, _, _, model_path = exported
    model = onnx.load(str(model_path), load_external_data=False)
    assert any(
        entry.domain in ("", "ai.onnx") and entry.version == ONNX_OPSET for entry in model.opset_import
    )
    assert "NonMaxSuppression" in {node.op_type for node in model.graph.node}
    inputs = {value.name: value.type.tensor_type.shape.dim for value in model.graph.input}
    assert list(inputs) == ["images", "image_sizes"]
    # batch, height and width are symbolic; channels fixed to 3
    assert [bool(d.dim_param) for d in inputs["images"]] == [True, False, True, True]
    assert inputs["images"][1].dim_value == 3
    outputs = [value.name for value in model.graph.output]
    assert outputs == ["boxes", "scores", "labels", "num_detections"]
    metadata = json.loads({p.key: p.value for p in model.metadata_props}["ladet"])
    assert (
        metadata["preprocess"]["resize"]["short_size"] == 96
        and metadata["preprocess"]["resize"]["max_size"] == 128
    )
    assert metadata["preprocess"]["pad"]["size_divisor"] == 32
    assert metadata["preprocess"]["normalize"]["mean"] == [123.675, 116.28, 103.53]
    assert metadata["max_detections"] == 100 and metadata["opset"] == ONNX_OPSET
    assert len(metadata["class_names"]) == 12 and metadata["model"]["head"] == "paa"


@pytest.mark.slow
def test_cli_predict_with_onnx_draws_the_same_pictures(exported, tmp_path) -> None:
    config, data_dir, checkpoint, model = exported
    common = [str(data_dir / "val"), "--score-threshold", "0.01"]
    assert (
        main(["predict", str(config), "--checkpoint", str(checkpoint), *common, "--out", str(tmp_path / "t")])
        == 0
    )
    assert main(["predict", "--onnx", str(model), *common, "--out", str(tmp_path / "o")]) == 0
    pictures = sorted(p.name for p in (tmp_path / "t").glob("*.png"))
    assert pictures and pictures == sorted(p.name for p in (tmp_path / "o").glob("*.png"))
    for name in pictures:
        with (
            Image.open(tmp_path / "t" / name) as first,
            Image.open(tmp_path / "o" / name) as second,
            Image.open(data_dir / "val" / name.replace(".png", ".jpg")) as original,
        ):
            # the image part (the caption below it names the model, which differs)
            height = original.height * (first.width // original.width)
            difference = np.abs(
                np.asarray(first, dtype=np.int16)[:height] - np.asarray(second, dtype=np.int16)[:height]
            )
            assert difference.max(axis=-1).astype(bool).mean() < 0.002, (
                name
            )  # at most a few pixels of a box edge
    records = [json.loads((tmp_path / folder / "results.json").read_text()) for folder in ("t", "o")]
    assert len(records[0]) == len(records[1]) > 0


def test_unreadable_image_and_missing_metadata_give_clean_errors(exported, tmp_path, capsys) -> None:
    _, _, _, model = exported
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read image file .*broken.jpg"):
        OnnxPredictor(model)(broken)
    assert main(["predict", "--onnx", str(model), str(broken), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert "broken.jpg" in error and "Traceback" not in error
    # an ONNX file that ladet did not write: no metadata
    plain = onnx.load(str(model), load_external_data=False)
    del plain.metadata_props[:]
    plain_path = tmp_path / "plain.onnx"
    onnx.save_model(plain, str(plain_path))
    with pytest.raises(MetadataError, match="plain.onnx: no ladet metadata"):
        OnnxPredictor(plain_path)
    assert main(["predict", "--onnx", str(plain_path), str(broken), "--out", str(tmp_path / "p")]) == 2
    assert "no ladet metadata" in capsys.readouterr().err


def test_export_errors_unsupported_option_and_missing_network(exported, tmp_path, capsys) -> None:
    config, _, checkpoint, _ = exported
    out = tmp_path / "m.onnx"
    base = ["export", str(config), "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out)]
    assert main([*base, "model.test.max_per_image=0"]) == 2
    error = capsys.readouterr().err
    assert "UnsupportedExportError" in error and "max_per_image" in error and "Traceback" not in error
    # a CoLAD config evaluating network 2 on a checkpoint that only holds network 1
    second = tmp_path / "second.yaml"
    second.write_text(f"_base_: {config}\nmodel:\n  head: {{type: cop}}\n")
    colad = [
        "method.name=colad",
        f"method.colad.second_network.config={second}",
        "method.colad.evaluate_network=second",
    ]
    assert main([*base, *colad]) == 2
    error = capsys.readouterr().err
    assert "second_detector" in error and str(checkpoint) in error and "Traceback" not in error
    assert not out.exists() and not list(tmp_path.glob(".*.partial"))
