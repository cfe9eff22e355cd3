"""ONNX export of each method's evaluation network: a LAD student with an IOP head, and a CoLAD
checkpoint whose evaluated network 2 has a COP head. Each is trained for one iteration from the tiny
pipeline, exported by the CLI and compared with the PyTorch Predictor on the val images."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
import torch
from cli_pipeline import make_tiny_pipeline

from ladet.cli import main
from ladet.config.loader import load_config
from ladet.deploy import OnnxPredictor
from ladet.predictor import Predictor
from tests.support.onnx_parity import assert_parity, val_images

ONE_ITERATION = [
    "train.epochs=1",
    "train.lr_steps=[]",
    "train.max_iters_per_epoch=1",
    "train.eval_interval=0",
]


def _method_overrides(root: Path, config: Path, teacher_checkpoint: Path) -> dict[str, list[str]]:
    second = root / "second_cop.yaml"
    second.write_text(
        f"_base_: {config}\nmodel:\n  head: {{type: cop}}\n  loss: {{box_loss_weighting: mean}}\n"
    )
    return {
        "lad_iop": [
            "method.name=lad",
            f"method.teacher.config={config}",
            f"method.teacher.checkpoint={teacher_checkpoint}",
            "method.evaluate_teacher=false",
            "model.head.type=iop",
            "model.loss.box_loss_weighting=mean",
        ],
        "colad_cop": [
            "method.name=colad",
            f"method.colad.second_network.config={second}",
            "method.colad.evaluate_network=second",
        ],
    }


@pytest.fixture(scope="module")
def method_exports(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Path, list[str], Path, Path]]]:
    """name -> (config, overrides, training checkpoint, exported model.onnx), one export per method."""
    enabled = torch.are_deterministic_algorithms_enabled()
    try:
        config, _, work_dir = make_tiny_pipeline(tmp_path_factory.mktemp("onnx_methods_pipeline"))
        root = tmp_path_factory.mktemp("onnx_methods")
        exports = {}
        for name, overrides in _method_overrides(root, config, work_dir / "latest.pth").items():
            run = root / name
            assert main(["train", str(config), "--work-dir", str(run), *overrides, *ONE_ITERATION]) == 0
            checkpoint = run / "latest.pth"
            model = root / f"{name}.onnx"
            command = [
                "export",
                str(config),
                "--checkpoint",
                str(checkpoint),
                "--format",
                "onnx",
                "--out",
                str(model),
            ]
            assert main([*command, *overrides]) == 0
            exports[name] = (config, overrides, checkpoint, model)
        yield exports
    finally:
        torch.use_deterministic_algorithms(enabled)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "head"), [("lad_iop", "iop"), ("colad_cop", "cop")])
def test_method_export_matches_predictor(method_exports, name: str, head: str) -> None:
    config_path, overrides, checkpoint, model = method_exports[name]
    config = load_config(str(config_path), overrides)
    torch_predictor = Predictor.from_checkpoint(config, checkpoint)
    assert type(torch_predictor.detector.head).__name__.lower() == f"{head}head"
    images, _ = val_images(config)
    onnx_predictor = OnnxPredictor(model, batch_size=2)
    torch_predictor.batch_size = 2
    assert_parity(torch_predictor(images), onnx_predictor(images))
    metadata = json.loads(
        {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}["ladet"]
    )
    assert metadata["model"]["head"] == head
