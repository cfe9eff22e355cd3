"""Errors in ladet's words: non-checkpoint files, binary annotation/config files, a failed start
leaves no work dir behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ladet.checkpoint_io import CheckpointError, load_checkpoint
from ladet.cli import main
from ladet.config.loader import ConfigError, load_config
from ladet.data.coco import parse_coco_annotations

REPOSITORY = Path(__file__).resolve().parents[1]
STUDENT = REPOSITORY / "configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml"
LAD = REPOSITORY / "configs/demo/lad_r18-paa-r34_fpn_1x8_builtin_demo.yaml"


class _NotPlainData:
    """An object torch.save pickles but weights_only=True refuses to load."""

    def __init__(self) -> None:
        self.value = 1


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return path


def test_a_photo_given_as_checkpoint_is_named_in_ladet_words(photo: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ladet", "export", str(STUDENT), "--checkpoint", str(photo)]
        + ["--out", str(tmp_path / "x.pth")],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
    )
    assert result.returncode == 2
    assert f"{photo} is not a checkpoint: it is a JPEG image" in result.stderr
    assert "weights_only" not in result.stderr and "Traceback" not in result.stderr


def test_pickled_objects_are_refused_without_torch_advice(tmp_path: Path) -> None:
    path = tmp_path / "objects.pth"
    torch.save({"model": _NotPlainData()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {path} holds Python objects other than tensors")
    assert "weights_only=False" not in message and "will likely succeed" not in message


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*cut.pth \(damaged or truncated\?\)"):
        load_checkpoint(path)


def test_binary_annotation_file_is_named(photo: Path) -> None:
    with pytest.raises(
        ValueError, match=rf"annotation file {photo} is a JPEG image, not a COCO JSON text file"
    ):
        parse_coco_annotations(str(photo), train=False)


def test_binary_config_file_is_named(photo: Path) -> None:
    with pytest.raises(ConfigError, match=rf"config file {photo} is a JPEG image, not a YAML text file"):
        load_config(photo)


def test_failed_start_leaves_no_work_dir(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert main(["make-dataset", "--out", str(data), "--num-train", "2", "--num-val", "1"]) == 0
    data_overrides = [
        f"data.train.ann_file={data / 'annotations/train.json'}",
        f"data.train.image_dir={data / 'train'}",
        f"data.val.ann_file={data / 'annotations/val.json'}",
        f"data.val.image_dir={data / 'val'}",
    ]
    capsys.readouterr()
    work_dir = tmp_path / "new_run"
    code = main(
        [
            "train",
            str(LAD),
            "--work-dir",
            str(work_dir),
            f"method.teacher.checkpoint={tmp_path / 'missing.pth'}",
            *data_overrides,
        ]
    )
    assert code == 2
    assert "missing.pth" in capsys.readouterr().err
    assert not work_dir.exists()
    existing = tmp_path / "kept"
    (existing / "notes").mkdir(parents=True)
    assert (
        main(
            [
                "train",
                str(LAD),
                "--work-dir",
                str(existing),
                f"method.teacher.checkpoint={tmp_path / 'x.pth'}",
                *data_overrides,
            ]
        )
        == 2
    )
    assert (existing / "notes").is_dir()  # a folder that existed before is never removed
