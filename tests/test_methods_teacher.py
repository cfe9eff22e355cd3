"""Teacher handling: strict loading, refusals, and the teacher kept out of the trained module."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from methods_support import method_config, tiny_batch, tiny_detector, tiny_model_config, write_network_files

from ladet.checkpoint_io import CheckpointError, save_checkpoint_atomic
from ladet.config.schema import NetworkReference
from ladet.methods import build_evaluation_detector, build_method
from ladet.methods.teacher import NetworkMismatchError, load_teacher


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[NetworkReference, torch.nn.Module]:
    directory = tmp_path_factory.mktemp("teacher")
    teacher = tiny_detector(seed=1)
    return write_network_files(directory, "teacher", tiny_model_config(), teacher), teacher


def test_teacher_is_loaded_exactly_and_frozen(teacher_files) -> None:
    reference, original = teacher_files
    teacher = load_teacher(reference, tiny_model_config(), "cpu")
    for (name, value), expected in zip(
        teacher.state_dict().items(), original.state_dict().values(), strict=True
    ):
        assert torch.equal(value, expected), name
    assert not any(parameter.requires_grad for parameter in teacher.parameters())
    assert not teacher.training


def test_teacher_outside_parameters_state_dict_and_optimizer(teacher_files) -> None:
    reference, _ = teacher_files
    method = build_method(method_config("lad", teacher=reference), "cpu")
    teacher = method.teacher_detector()
    assert teacher is not None
    teacher_ids = {id(parameter) for parameter in teacher.parameters()}
    assert not teacher_ids & {id(parameter) for parameter in method.parameters()}
    assert all(key.startswith("detector.") for key in method.state_dict())
    assert not any(module is teacher for module in method.modules())
    optimizer = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)
    optimizer_ids = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    assert not teacher_ids & optimizer_ids
    before = copy.deepcopy(teacher.state_dict())
    student_before = copy.deepcopy(method.detector.state_dict())
    for _ in range(2):
        losses = method(tiny_batch())
        optimizer.zero_grad()
        sum(value for key, value in losses.items() if key.startswith("loss_")).backward()
        optimizer.step()
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert any(
        not torch.equal(value, student_before[key]) for key, value in method.detector.state_dict().items()
    )


def test_teacher_stays_in_eval_mode(teacher_files) -> None:
    reference, _ = teacher_files
    method = build_method(method_config("kd", teacher=reference), "cpu")
    method.train()
    assert method.detector.training and not method.teacher_detector().training
    method.teacher_detector().train()  # even if someone flips it, forward resets it
    method(tiny_batch())
    assert not method.teacher_detector().training
    teacher_outputs = method.teacher_outputs(tiny_batch().images)
    assert teacher_outputs.class_scores.dtype == torch.float32
    assert not teacher_outputs.class_scores.requires_grad and not teacher_outputs.box_deltas.requires_grad
    # .to() moves/casts the teacher together with the student
    method.to(torch.float64)
    assert next(method.teacher_detector().parameters()).dtype == torch.float64


def test_different_num_classes_is_refused(tmp_path: Path) -> None:
    other = tiny_detector(num_classes=5)
    reference = write_network_files(tmp_path, "five", tiny_model_config(num_classes=5), other)
    with pytest.raises(NetworkMismatchError, match=r"model\.num_classes: student 3 vs 5"):
        load_teacher(reference, tiny_model_config(), "cpu")


def test_different_strides_are_refused_with_every_difference(tmp_path: Path) -> None:
    config = tiny_model_config(num_classes=4)
    config.anchors.strides = [8, 16, 32, 64, 256]
    config.anchors.octave_base_scale = 4.0
    reference = write_network_files(tmp_path, "strides", config)
    reference.checkpoint = str(tmp_path / "unused.pth")
    Path(reference.checkpoint).write_bytes(b"")
    with pytest.raises(NetworkMismatchError) as error:
        load_teacher(reference, tiny_model_config(), "cpu")
    message = str(error.value)
    assert "model.anchors.strides: student [8, 16, 32, 64, 128] vs [8, 16, 32, 64, 256]" in message
    assert "octave_base_scale: student 8.0 vs 4.0" in message
    assert "num_classes: student 3 vs 4" in message


def test_missing_keys_are_refused(tmp_path: Path, teacher_files) -> None:
    reference, original = teacher_files
    state = {
        f"detector.{key}": value
        for key, value in original.state_dict().items()
        if not key.startswith("head.")
    }
    state["detector.extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    save_checkpoint_atomic({"model": state}, broken)
    with pytest.raises(CheckpointError, match=r"missing keys \(\d+\): head\.") as error:
        load_teacher(NetworkReference(reference.config, str(broken)), tiny_model_config(), "cpu")
    assert "unexpected keys (1): extra.weight" in str(error.value)


def test_missing_checkpoint_is_an_error_before_training(tmp_path: Path, teacher_files) -> None:
    reference, _ = teacher_files
    with pytest.raises(ValueError, match="checkpoint is not set"):
        load_teacher(NetworkReference(reference.config, None), tiny_model_config(), "cpu")
    with pytest.raises(CheckpointError, match="teacher checkpoint not found"):
        build_method(
            method_config("lad", teacher=NetworkReference(reference.config, str(tmp_path / "no.pth"))), "cpu"
        )
    with pytest.raises(ValueError, match="needs a teacher"):
        build_method(method_config("solad"), "cpu")
    with pytest.raises(
        ValueError, match=r"unknown method.name 'lda'; valid: \['baseline', 'colad', 'kd', 'lad', 'solad'\]"
    ):
        build_method(method_config("lda"), "cpu")


def test_evaluation_detector_needs_no_teacher(tmp_path: Path) -> None:
    config = method_config(
        "lad", teacher=NetworkReference(str(tmp_path / "absent.yaml"), str(tmp_path / "absent.pth"))
    )
    detector = build_evaluation_detector(config)
    assert detector.num_classes == 3


def test_methods_built_directly_also_check_the_layout() -> None:
    from ladet.methods import CoLADMethod, LADMethod

    student = tiny_detector(seed=0)
    with pytest.raises(NetworkMismatchError, match="num_classes: student 3 vs 4"):
        LADMethod(student, tiny_detector(seed=1, num_classes=4))
    with pytest.raises(NetworkMismatchError, match="second network"):
        CoLADMethod(student, tiny_detector(seed=1, num_classes=4))
