"""The training engine with small stand-ins (tests/engine_fakes.py): files, logs, resume, guards."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
from engine_fakes import TinyMethod, fake_components, tiny_config
from torch import nn

from ladet.checkpoint_io import CheckpointError, load_checkpoint
from ladet.engine import NonFiniteLossError, TrainingComponents, train
from ladet.engine.logging import read_log


@pytest.fixture(autouse=True)
def _single_thread_and_restored_determinism() -> Iterator[None]:
    torch.set_num_threads(1)
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


def _weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _assert_bitwise_equal(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_train_writes_checkpoints_config_logs_and_metrics(tmp_path) -> None:
    metrics = train(tiny_config(epochs=2), tmp_path, components=fake_components())
    for name in (
        "config.yaml",
        "epoch_1.pth",
        "epoch_2.pth",
        "latest.pth",
        "log.jsonl",
        "metrics_epoch_2.json",
    ):
        assert (tmp_path / name).is_file(), name
    checkpoint = load_checkpoint(tmp_path / "latest.pth")
    # 12 images / 2 per batch = 6 iterations per epoch
    assert (
        checkpoint["epoch"] == 2 and checkpoint["iteration"] == 12 and checkpoint["iteration_in_epoch"] == 0
    )
    assert checkpoint["format"] == "ladet-1"
    assert checkpoint["config"]["train"]["epochs"] == 2
    assert set(checkpoint["rng"]) >= {"torch", "numpy", "python"} and len(checkpoint["rng_per_rank"]) == 1
    assert set(checkpoint["model"]) == set(TinyMethod().state_dict())
    assert checkpoint["optimizer"]["state"], "momentum buffers are saved"
    records = read_log(tmp_path / "log.jsonl")
    train_records = [r for r in records if r["type"] == "train"]
    assert len(train_records) == 12
    assert {"loss", "loss_first", "loss_second", "ratio", "lr", "data_time"} <= set(train_records[0])
    assert train_records[0]["eta_s"] > 0 and train_records[-1]["eta_s"] == 0  # ETA of the whole run
    # lr with 2 images: 0.01 * 2 / 16; warm-up over 3 iterations; decay at epoch 1 (0-based)
    assert train_records[0]["lr"] == pytest.approx(0.00125 * 0.001)
    assert train_records[5]["lr"] == pytest.approx(0.00125)
    assert train_records[6]["lr"] == pytest.approx(0.000125)
    eval_records = [r for r in records if r["type"] == "eval"]
    assert [r["epoch"] for r in eval_records] == [1, 2]
    saved = json.loads((tmp_path / "metrics_epoch_2.json").read_text())
    assert saved["metrics"]["AP"] == pytest.approx(metrics["AP"])
    assert metrics["num_images"] == 5 and metrics["num_duplicate_images"] == 0


def test_resume_after_interruption_is_bitwise_equal_to_uninterrupted_run(tmp_path) -> None:
    train(tiny_config(epochs=2), tmp_path / "full", components=fake_components())
    interrupted = tmp_path / "interrupted"
    # call 9 = epoch 2, batch 3 poisons the loss: the run stops; latest.pth is the mid-epoch one of iteration 8
    with pytest.raises(NonFiniteLossError):
        train(
            tiny_config(epochs=2, checkpoint_every_iters=4),
            interrupted,
            components=fake_components(nan_at_call=9),
        )
    assert load_checkpoint(interrupted / "latest.pth")["iteration"] == 8
    train(tiny_config(epochs=2, checkpoint_every_iters=4), interrupted, "auto", components=fake_components())
    _assert_bitwise_equal(_weights(tmp_path / "full" / "latest.pth"), _weights(interrupted / "latest.pth"))
    # resuming from an epoch-boundary checkpoint in a new work dir gives the same weights too
    train(
        tiny_config(epochs=2),
        tmp_path / "from_epoch",
        tmp_path / "full" / "epoch_1.pth",
        components=fake_components(),
    )
    _assert_bitwise_equal(
        _weights(tmp_path / "full" / "latest.pth"), _weights(tmp_path / "from_epoch" / "latest.pth")
    )


def test_non_finite_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path) -> None:
    config = tiny_config(epochs=2, checkpoint_every_iters=2)
    with pytest.raises(NonFiniteLossError) as raised:
        train(config, tmp_path, components=fake_components(nan_at_call=3))
    message = str(raised.value)
    assert "iteration 3" in message and "epoch 1" in message
    assert "loss_second=nan" in message and "loss_first" not in message
    latest = load_checkpoint(tmp_path / "latest.pth")
    assert latest["iteration"] == 2
    assert all(torch.isfinite(value).all() for value in latest["model"].values())


def test_resume_auto_without_checkpoint_starts_fresh_and_missing_path_is_refused(tmp_path) -> None:
    train(tiny_config(epochs=1), tmp_path / "auto", "auto", components=fake_components())
    assert load_checkpoint(tmp_path / "auto" / "latest.pth")["iteration"] == 6
    with pytest.raises(CheckpointError, match="not found"):
        train(tiny_config(epochs=1), tmp_path / "x", tmp_path / "missing.pth", components=fake_components())


class _OtherArchitecture(TinyMethod):
    def __init__(self) -> None:
        super().__init__()
        self.detector.conv = nn.Conv2d(3, 4, kernel_size=3)  # mis-shaped weight
        self.detector.extra = nn.Linear(2, 2)  # unexpected in the model, missing from the file


def test_checkpoint_of_another_architecture_is_refused_with_key_lists(tmp_path) -> None:
    train(tiny_config(epochs=1), tmp_path / "run", components=fake_components())
    components = fake_components()
    components.build_method = lambda config, device: _OtherArchitecture()
    with pytest.raises(CheckpointError) as raised:
        train(
            tiny_config(epochs=2), tmp_path / "other", tmp_path / "run" / "latest.pth", components=components
        )
    message = str(raised.value)
    assert "missing keys (2): detector.extra.bias, detector.extra.weight" in message
    assert (
        "mis-shaped keys (1): detector.conv.weight: checkpoint (4, 3, 1, 1) vs model (4, 3, 3, 3)" in message
    )
    assert "latest.pth" in message


def test_load_from_initialises_weights_only(tmp_path) -> None:
    train(tiny_config(epochs=1), tmp_path / "source", components=fake_components())
    source = _weights(tmp_path / "source" / "latest.pth")
    captured: list[nn.Module] = []
    components = fake_components()
    components.build_method = lambda config, device: captured.append(TinyMethod()) or captured[-1]
    config = tiny_config(epochs=1, load_from=str(tmp_path / "source" / "latest.pth"), lr=0.0)
    train(config, tmp_path / "target", components=components)
    # lr 0: the loaded parameters pass through training unchanged (BatchNorm statistics do move)
    parameters = dict(captured[-1].named_parameters())
    _assert_bitwise_equal(
        {key: source[key] for key in parameters}, {k: v.detach() for k, v in parameters.items()}
    )
    assert load_checkpoint(tmp_path / "target" / "latest.pth")["iteration"] == 6


def test_teacher_is_evaluated_once_and_reported_next_to_the_student(tmp_path) -> None:
    train(tiny_config(epochs=2), tmp_path, components=fake_components(with_teacher=True))
    records = read_log(tmp_path / "log.jsonl")
    teacher_records = [r for r in records if r["type"] == "teacher_eval"]
    assert len(teacher_records) == 1 and records.index(teacher_records[0]) == 0
    eval_records = [r for r in records if r["type"] == "eval"]
    assert all(r["teacher_AP"] == pytest.approx(teacher_records[0]["AP"]) for r in eval_records)
    saved = json.loads((tmp_path / "metrics_epoch_2.json").read_text())
    assert saved["teacher_metrics"]["AP"] == pytest.approx(teacher_records[0]["AP"])
    assert (tmp_path / "teacher_metrics.json").is_file()


def test_method_without_loss_terms_is_refused(tmp_path) -> None:
    class NoLoss(TinyMethod):
        def forward(self, batch):  # noqa: ANN001, ANN201
            return {"ratio": super().forward(batch)["ratio"]}

    components = TrainingComponents(**{**fake_components().__dict__, "build_method": lambda c, d: NoLoss()})
    with pytest.raises(ValueError, match="no 'loss_\\*' term"):
        train(tiny_config(epochs=1), tmp_path, components=components)
