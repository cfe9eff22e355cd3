"""The real pipeline (built-in data, PAA-R18, COCO evaluation) through the CLI: train → checkpoint
→ resume → test, bitwise-exact resume after an interruption, and test without a teacher."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_pipeline import make_tiny_pipeline

from ladet.checkpoint_io import load_checkpoint
from ladet.cli import main
from ladet.config.loader import load_config
from ladet.engine import TrainingComponents, train
from ladet.engine.logging import read_log


@pytest.fixture(autouse=True)
def _restore_determinism() -> Iterator[None]:
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    enabled = torch.are_deterministic_algorithms_enabled()
    try:
        return make_tiny_pipeline(tmp_path_factory.mktemp("pipeline"))
    finally:
        torch.use_deterministic_algorithms(enabled)


@pytest.mark.slow
def test_train_writes_checkpoints_and_coco_metrics(pipeline) -> None:
    _, _, work_dir = pipeline
    checkpoint = load_checkpoint(work_dir / "latest.pth")
    assert checkpoint["epoch"] == 2 and checkpoint["iteration"] == 4  # 4 images / 2 per batch, 2 epochs
    assert all(key.startswith("detector.") for key in checkpoint["model"])
    assert checkpoint["config"]["model"]["backbone"]["depth"] == 18
    report = json.loads((work_dir / "metrics_epoch_2.json").read_text())
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class_AP"} <= set(report["metrics"])
    assert report["metrics"]["num_images"] == 2
    records = read_log(work_dir / "log.jsonl")
    assert {"loss_cls", "loss_bbox", "loss_iou", "lr"} <= set(
        next(r for r in records if r["type"] == "train")
    )
    assert [r["epoch"] for r in records if r["type"] == "eval"] == [1, 2]
    assert (work_dir / "config.yaml").is_file() and (work_dir / "tensorboard").is_dir()


@pytest.mark.slow
def test_resume_continues_and_test_reproduces_the_training_evaluation(pipeline, tmp_path) -> None:
    config, _, work_dir = pipeline
    resumed = tmp_path / "resumed"
    assert (
        main(
            [
                "train",
                str(config),
                "--work-dir",
                str(resumed),
                "--resume",
                str(work_dir / "latest.pth"),
                "train.epochs=3",
            ]
        )
        == 0
    )
    checkpoint = load_checkpoint(resumed / "latest.pth")
    assert checkpoint["epoch"] == 3 and checkpoint["iteration"] == 6
    assert not (resumed / "epoch_1.pth").exists() and (resumed / "epoch_3.pth").is_file()
    first_step = next(r for r in read_log(resumed / "log.jsonl") if r["type"] == "train")
    assert first_step["step"] == 5 and first_step["epoch"] == 3
    # `ladet test` on the epoch-2 weights gives the numbers the training run evaluated
    out = tmp_path / "test"
    assert main(["test", str(config), "--checkpoint", str(work_dir / "epoch_2.pth"), "--out", str(out)]) == 0
    tested = json.loads((out / "metrics.json").read_text())
    trained = json.loads((work_dir / "metrics_epoch_2.json").read_text())["metrics"]
    for key in ("AP", "AP50", "AR100"):
        assert tested[key] == pytest.approx(trained[key], abs=1e-9)
    results = json.loads((out / "results.json").read_text())
    assert {record["image_id"] for record in results} <= {1, 2}


class _InterruptingLoader:
    """Wraps a real loader and raises KeyboardInterrupt before batch ``stop_at`` of the run."""

    counter = 0

    def __init__(self, loader, stop_at: int) -> None:
        self.loader, self.stop_at = loader, stop_at

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if _InterruptingLoader.counter == self.stop_at:
                raise KeyboardInterrupt
            _InterruptingLoader.counter += 1
            yield batch


@pytest.mark.slow
def test_interrupted_then_resumed_run_has_bitwise_the_weights_of_the_uninterrupted_one(
    pipeline, tmp_path
) -> None:
    config_path, _, work_dir = pipeline
    config = load_config(config_path, ["train.checkpoint_every_iters=1"])
    config.deterministic = True
    real = TrainingComponents()
    interrupting = TrainingComponents(
        build_train_loader=lambda c, rank, world, epoch, start: _InterruptingLoader(
            real.build_train_loader(c, rank, world, epoch, start), stop_at=3
        )
    )
    _InterruptingLoader.counter = 0
    with pytest.raises(KeyboardInterrupt):  # stops inside epoch 2, after 3 of 4 iterations
        train(config, tmp_path, components=interrupting)
    assert load_checkpoint(tmp_path / "latest.pth")["iteration"] == 3
    assert load_checkpoint(tmp_path / "latest.pth")["iteration_in_epoch"] == 1
    train(config, tmp_path, "auto")
    expected = load_checkpoint(work_dir / "latest.pth")["model"]
    obtained = load_checkpoint(tmp_path / "latest.pth")["model"]
    assert expected.keys() == obtained.keys()
    for key in expected:
        assert torch.equal(expected[key], obtained[key]), key


@pytest.mark.slow
def test_test_command_builds_only_the_evaluation_network(pipeline, tmp_path) -> None:
    """A LAD student is tested although its teacher checkpoint does not exist."""
    config, _, work_dir = pipeline
    overrides = [
        "method.name=lad",
        f"method.teacher.config={config}",
        f"method.teacher.checkpoint={tmp_path / 'no_such_teacher.pth'}",
    ]
    code = main(
        [
            "test",
            str(config),
            "--checkpoint",
            str(work_dir / "latest.pth"),
            "--out",
            str(tmp_path),
            *overrides,
        ]
    )
    assert code == 0 and (tmp_path / "metrics.json").is_file()


@pytest.mark.slow
def test_lad_run_evaluates_its_teacher_first_and_keeps_it_out_of_the_checkpoint(pipeline, tmp_path) -> None:
    """The teacher is the baseline's epoch-2 network, so its AP is the baseline's epoch-2 AP."""
    config, _, work_dir = pipeline
    overrides = [
        "method.name=lad",
        f"method.teacher.config={config}",
        f"method.teacher.checkpoint={work_dir / 'epoch_2.pth'}",
        "train.epochs=1",
        "train.max_iters_per_epoch=1",
        "train.lr_steps=[]",
    ]
    assert main(["train", str(config), "--work-dir", str(tmp_path), *overrides]) == 0
    baseline = json.loads((work_dir / "metrics_epoch_2.json").read_text())["metrics"]
    teacher = json.loads((tmp_path / "teacher_metrics.json").read_text())
    assert teacher["AP"] == pytest.approx(baseline["AP"], abs=1e-9)
    assert teacher["AR100"] == pytest.approx(baseline["AR100"], abs=1e-9)
    records = read_log(tmp_path / "log.jsonl")
    assert records[0]["type"] == "teacher_eval"
    evaluation = next(r for r in records if r["type"] == "eval")
    assert evaluation["teacher_AP"] == pytest.approx(baseline["AP"], abs=1e-9)
    checkpoint = load_checkpoint(tmp_path / "latest.pth")
    assert checkpoint["iteration"] == 1
    assert all(key.startswith("detector.") for key in checkpoint["model"]), "no teacher weights saved"
