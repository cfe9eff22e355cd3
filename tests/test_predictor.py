"""Predictor: every input kind gives the same detections; only the evaluation network is built."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_pipeline import make_tiny_pipeline
from PIL import Image

from ladet.checkpoint_io import CheckpointError
from ladet.config.loader import load_config
from ladet.predictor import Predictor, expand_image_paths


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    enabled = torch.are_deterministic_algorithms_enabled()
    try:
        yield make_tiny_pipeline(tmp_path_factory.mktemp("predictor"))
    finally:
        torch.use_deterministic_algorithms(enabled)


def _same(first, second) -> None:
    assert torch.equal(first.boxes, second.boxes)
    assert torch.equal(first.scores, second.scores)
    assert torch.equal(first.labels, second.labels)


@pytest.mark.slow
def test_path_pil_array_tensor_and_list_inputs_agree(pipeline) -> None:
    config, data_dir, work_dir = pipeline
    predictor = Predictor.from_checkpoint(config, work_dir / "latest.pth")
    assert predictor.class_names[:3] == ["circle", "square", "triangle"] and len(predictor.class_names) == 12
    path = data_dir / "val" / "000001.jpg"
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    array = np.asarray(image)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float()
    reference = predictor(str(path))
    assert len(reference) == 1
    for given in (path, image, array, tensor):
        _same(reference[0], predictor(given)[0])
    both = predictor([path, data_dir / "val" / "000002.jpg"])
    assert len(both) == 2
    _same(reference[0], both[0])
    # boxes are in the original frame
    detections = reference[0]
    if len(detections.boxes):
        assert float(detections.boxes[:, 2].max()) <= image.width + 1e-3
        assert float(detections.boxes[:, 3].max()) <= image.height + 1e-3
    records = predictor.describe(detections, score_threshold=0.0)
    assert len(records) == len(detections.scores)


@pytest.mark.slow
def test_from_config_object_matches_from_path_and_wrong_architecture_is_refused(pipeline) -> None:
    config, data_dir, work_dir = pipeline
    image = data_dir / "val" / "000002.jpg"
    from_path = Predictor.from_checkpoint(config, work_dir / "latest.pth")
    from_object = Predictor.from_checkpoint(load_config(config), work_dir / "latest.pth")
    _same(from_path(image)[0], from_object(image)[0])
    with pytest.raises(CheckpointError, match="mis-shaped keys"):
        Predictor.from_checkpoint(config, work_dir / "latest.pth", overrides=["model.head.feat_channels=32"])


def test_expand_image_paths_lists_folders_and_refuses_missing_inputs(tmp_path) -> None:
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in expand_image_paths([tmp_path])] == ["a.jpg", "b.png"]
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        expand_image_paths([tmp_path / "missing.jpg"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        expand_image_paths([empty])
