"""The one precision policy (``train.amp``) and fp32 post-processing, on the CPU with bf16 autocast.

CPU bf16 autocast runs the same branches as CUDA fp16: the student forward under the policy, the
teacher inside it with fp32 outputs and fp32 costs, post-processing with autocast disabled. The
CUDA-only part (fp16 + GradScaler, no teacher autocast when AMP is off) is at the end, skipped
without a GPU.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_fakes import fake_components, tiny_config
from methods_support import method_config, tiny_batch, tiny_detector, tiny_model_config, write_network_files

from ladet.config.errors import ConfigError
from ladet.config.loader import config_from_dict, config_to_dict, load_config
from ladet.config.schema import Config, NetworkReference
from ladet.config.schema import TestConfig as InferenceConfig
from ladet.engine import train
from ladet.engine.evaluate import DetectionCollector, evaluate
from ladet.engine.precision import Precision, precision_policy
from ladet.methods import build_method
from ladet.models.outputs import HeadOutputs
from ladet.models.postprocess import postprocess_detections, score_voting
from ladet.predictor import Predictor
from ladet.structures import Batch, Detections

BF16 = Precision("cpu", torch.bfloat16)


@pytest.fixture(autouse=True)
def _single_thread_and_restored_determinism() -> Iterator[None]:
    torch.set_num_threads(1)
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


# ------------------------------------------------------------------------------------ policy
@pytest.mark.parametrize(
    ("amp", "device", "dtype"),
    [
        (False, "cpu", None),
        (True, "cpu", None),  # fp16 autocast is a CUDA policy: the CPU keeps fp32 (older configs)
        ("float16", "cpu", None),
        ("bfloat16", "cpu", torch.bfloat16),
        (False, "cuda", None),
        (True, "cuda", torch.float16),
        ("float16", "cuda", torch.float16),
    ],
)
def test_policy_table(amp: bool | str, device: str, dtype: torch.dtype | None) -> None:
    precision = precision_policy(amp, device)
    assert precision.dtype == dtype and precision.device_type == device
    assert precision.uses_grad_scaler == (dtype == torch.float16)
    if device == "cpu":
        with precision.autocast():
            assert torch.is_autocast_enabled("cpu") == (dtype is not None)


def test_grad_scaler_only_for_float16() -> None:
    assert not precision_policy("bfloat16", "cpu").grad_scaler().is_enabled()
    assert not precision_policy(False, "cpu").grad_scaler().is_enabled()


def test_amp_key_accepts_the_four_values_and_names_a_wrong_one(tmp_path: Path) -> None:
    for value in (False, True, "float16", "bfloat16"):
        data = config_to_dict(Config())
        data["train"]["amp"] = value
        assert config_from_dict(data).train.amp == value
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  amp: bfloat16\n", encoding="utf-8")
    assert load_config(str(path)).train.amp == "bfloat16"
    assert load_config(str(path), ["train.amp=false"]).train.amp is False
    with pytest.raises(ConfigError, match=r"train\.amp.*'fp16' is not one of"):
        load_config(str(path), ["train.amp=fp16"])
    with pytest.raises(ConfigError, match=r"train\.amp.*expected bool \| str"):
        load_config(str(path), ["train.amp=3"])
    with pytest.raises(ValueError, match="train.amp"):
        precision_policy("half", "cpu")


# ------------------------------------------------------------------ post-processing in fp32
def _voting_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """50 detections and 2000 candidates on an 800x1333 image (coordinates of hundreds of px)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(50, 2, generator=generator) * torch.tensor([1100.0, 600.0]) + 100.0
    sizes = torch.rand(50, 2, generator=generator) * 150.0 + 30.0
    detections = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)  # [50, 4]
    owner = torch.randint(0, 50, (2000,), generator=generator)
    jitter = torch.randn(2000, 4, generator=generator) * 6.0
    candidates = detections[owner] + jitter  # [2000, 4]
    labels = torch.randint(0, 3, (50,), generator=generator)
    scores = torch.rand(2000, 3, generator=generator)
    return detections, labels, candidates, scores


def test_score_voting_under_bf16_autocast_equals_fp32() -> None:
    """The issue's defect: under CPU bf16 autocast the voting matmul ran in bf16 (boxes moved by
    pixels); now voting disables autocast, so the boxes agree with fp32 within 1e-3 px."""
    detections, labels, candidates, scores = _voting_inputs()
    reference = score_voting(detections, labels, candidates, scores, 0.05, 0.025)
    with BF16.autocast():
        voted = score_voting(detections, labels, candidates, scores, 0.05, 0.025)
        lowered = (torch.ones(4, 4) @ torch.ones(4, 4)).dtype  # what autocast does to a bare matmul
    assert lowered == torch.bfloat16, "the region really autocasts"
    assert voted.dtype == torch.float32
    assert (voted - reference).abs().max().item() <= 1e-3


def _head_outputs(seed: int = 0) -> HeadOutputs:
    generator = torch.Generator().manual_seed(seed)
    level_sizes = [(25, 42), (13, 21), (7, 11), (4, 6), (2, 3)]
    num_anchors = sum(h * w for h, w in level_sizes)
    return HeadOutputs(
        class_scores=torch.randn(2, num_anchors, 3, generator=generator) - 2.0,
        box_deltas=torch.randn(2, num_anchors, 4, generator=generator) * 0.3,
        iou_logits=torch.randn(2, num_anchors, generator=generator),
        level_sizes=level_sizes,
    )


def test_postprocess_under_bf16_autocast_equals_fp32() -> None:
    from ladet.models.anchors import AnchorGenerator
    from ladet.models.box_coder import DeltaBoxCoder

    outputs = _head_outputs()
    grid = AnchorGenerator([8, 16, 32, 64, 128], 8.0).grid(outputs.level_sizes, torch.device("cpu"))
    image_sizes = torch.tensor([[800, 1333], [700, 1200]])
    scale_factors = torch.tensor([[1.0, 1.0], [0.8, 0.75]])
    arguments = (grid, DeltaBoxCoder(), image_sizes, scale_factors, InferenceConfig())
    reference = postprocess_detections(outputs, *arguments)
    with BF16.autocast():
        result = postprocess_detections(outputs, *arguments)
    assert sum(len(d.boxes) for d in reference) > 50
    for got, expected in zip(result, reference, strict=True):
        assert got.boxes.dtype == torch.float32
        assert torch.equal(got.labels, expected.labels) and torch.equal(got.scores, expected.scores)
        assert (got.boxes - expected.boxes).abs().max().item() <= 1e-3


# --------------------------------------------------------------------- training under bf16
def _small_batch(**kwargs: Any) -> Batch:
    """``tiny_batch`` at half size (64x80): bf16 convolutions are slow on CPUs without bf16 units."""
    batch = tiny_batch(**kwargs)
    return Batch(
        images=torch.nn.functional.interpolate(batch.images, scale_factor=0.5),
        image_sizes=batch.image_sizes // 2,
        padded_sizes=batch.padded_sizes // 2,
        scale_factors=batch.scale_factors * 0.5,
        original_sizes=batch.original_sizes,
        gt_boxes=[boxes / 2 for boxes in batch.gt_boxes],
        gt_labels=batch.gt_labels,
        image_ids=batch.image_ids,
    )


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NetworkReference]:
    directory = tmp_path_factory.mktemp("networks")
    return {
        "teacher": write_network_files(directory, "teacher", tiny_model_config(), tiny_detector(seed=1)),
        "second": write_network_files(directory, "second", tiny_model_config(head_type="cop")),
    }


def _first(result: Any) -> torch.Tensor:
    return result[0] if isinstance(result, tuple) else result


def _record_costs(assigner: Any, name: str, calls: list[tuple[Any, torch.Tensor]]) -> None:
    """Wraps ``assigner.<name>(outputs, grid, pre, ...)``: records (outputs, costs) of each call."""
    original = getattr(assigner, name)

    def recording(outputs: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(outputs, *args, **kwargs)
        calls.append((outputs, _first(result), lambda: _first(original(outputs, *args, **kwargs))))
        return result

    setattr(assigner, name, recording)


def _record_assignments(assigner: Any, records: list[Any], name: str = "assign") -> None:
    """Wraps ``assigner.<name>``: records (result, a recomputation outside autocast)."""
    original = getattr(assigner, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        detached = [arg.detach().float() if isinstance(arg, HeadOutputs) else arg for arg in args]

        def recompute() -> Any:
            with torch.autocast("cpu", enabled=False):
                return original(*detached, **kwargs)

        records.append((result, recompute))
        return result

    setattr(assigner, name, recording)


@pytest.mark.parametrize("name", ["baseline", "lad", "colad"])
def test_a_few_bf16_steps_stay_finite_with_fp32_costs(
    name: str, references: dict[str, NetworkReference]
) -> None:
    torch.manual_seed(0)
    config = method_config(
        name,
        teacher=references["teacher"] if name == "lad" else None,
        second=references["second"] if name == "colad" else None,
    )
    config.train.amp = "bfloat16"
    method = build_method(config, "cpu")
    precision = precision_policy(config.train.amp, "cpu")
    scaler = precision.grad_scaler()
    student_dtypes: list[torch.dtype] = []
    method.detector.head.register_forward_hook(
        lambda module, inputs, outputs: student_dtypes.append(outputs.class_scores.dtype)
    )
    calls: list[Any] = []
    assignments: list[Any] = []  # whole assignments (labels, targets, positives) under autocast
    if name == "lad":
        _record_costs(method.teacher_assigner, "costs", calls)
        _record_assignments(method.teacher_assigner, assignments)
    elif name == "colad":
        _record_costs(method.assigner, "costs", calls)
        _record_assignments(method.assigner, assignments, "select_positives")
    else:
        _record_assignments(method.assigner, assignments)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.005, momentum=0.9)
    for batch in (_small_batch(seed=0), _small_batch(seed=1, second_image_without_gt=True)):
        with precision.autocast():
            losses = method(batch)
        total = sum(value.float() for key, value in losses.items() if key.startswith("loss_"))
        assert torch.isfinite(total), losses
        optimizer.zero_grad()
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    assert student_dtypes and set(student_dtypes) == {torch.bfloat16}, "the student ran under bf16"
    if name != "baseline":
        assert calls, "the costs were computed"
        for outputs, costs, recompute in calls:
            assert outputs.class_scores.dtype == torch.float32 and costs.dtype == torch.float32
            assert torch.equal(costs, recompute()), "the costs under autocast equal the fp32 ones"
    assert assignments
    for result, recompute in assignments:  # the same assignment as in fp32 outside autocast
        expected = recompute()
        for field in ("labels", "box_targets", "positive_mask", "positive_gt_index"):
            if hasattr(result, field):
                assert torch.equal(getattr(result, field), getattr(expected, field)), field
        if isinstance(result, torch.Tensor):
            assert torch.equal(result, expected)
    for parameter in method.parameters():
        assert torch.isfinite(parameter).all()


def test_teacher_runs_in_the_callers_precision(references: dict[str, NetworkReference]) -> None:
    """Autocast only when AMP is on; the outputs are fp32 either way."""
    method = build_method(method_config("lad", teacher=references["teacher"]), "cpu")
    seen: list[tuple[bool, torch.dtype]] = []
    method.teacher_detector().head.register_forward_hook(
        lambda module, inputs, outputs: seen.append(
            (torch.is_autocast_enabled("cpu"), outputs.class_scores.dtype)
        )
    )
    images = _small_batch().images
    plain = method.teacher_outputs(images)
    with BF16.autocast():
        autocast = method.teacher_outputs(images)
    assert seen == [(False, torch.float32), (True, torch.bfloat16)]
    assert plain.class_scores.dtype == autocast.class_scores.dtype == torch.float32
    assert autocast.box_deltas.dtype == torch.float32 and autocast.iou_logits.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(plain.class_scores, method.teacher_detector()(images).class_scores)


# ----------------------------------------------------------------- evaluate and predict bf16
def _low_threshold_detector() -> Any:
    detector = tiny_detector(seed=3)
    detector.config.test.score_threshold = 0.0  # a random head scores ~0.01: keep its boxes
    return detector.eval()


def _fp32_postprocess_of_bf16_outputs(detector: Any, batch: Any) -> list[Detections]:
    """The oracle: the head under bf16 autocast, post-processing in plain fp32 outside it."""
    with torch.no_grad(), BF16.autocast():
        outputs = detector(batch.images)
    grid = detector.anchor_grid(outputs.level_sizes, batch.images.device)
    return postprocess_detections(
        outputs.float(),
        grid,
        detector.box_coder,
        batch.image_sizes,
        batch.scale_factors,
        detector.config.test,
    )


def _assert_same_detections(got: list[Detections], expected: list[Detections]) -> None:
    assert sum(len(d.boxes) for d in expected) > 0
    for first, second in zip(got, expected, strict=True):
        assert torch.equal(first.labels, second.labels)
        assert torch.allclose(first.scores, second.scores, atol=1e-6)
        assert first.boxes.dtype == torch.float32
        assert (first.boxes - second.boxes).abs().max().item() <= 1e-3


def test_evaluate_under_bf16_runs_the_head_in_bf16_and_postprocesses_in_fp32() -> None:
    detector = _low_threshold_detector()
    batches = [_small_batch(seed=0), _small_batch(seed=1)]
    collector = DetectionCollector()
    evaluate(detector, batches, collector, "cpu", print_table=False, precision=BF16)
    expected = [d for batch in batches for d in _fp32_postprocess_of_bf16_outputs(detector, batch)]
    _assert_same_detections(collector.detections, expected)
    fp32 = DetectionCollector()
    evaluate(detector, batches, fp32, "cpu", print_table=False)
    assert not torch.equal(fp32.detections[0].scores, collector.detections[0].scores), "bf16 really ran"


def test_predictor_takes_its_precision_from_train_amp() -> None:
    from ladet.data.collate import collate
    from ladet.data.transforms import prepare_image_for_inference

    detector = _low_threshold_detector()
    config = Config(model=copy.deepcopy(detector.config))
    config.data.short_size, config.data.max_size = 128, 160  # keep the bf16 forward small
    config.train.amp = "bfloat16"
    predictor = Predictor(detector, config, "cpu")
    assert predictor.precision == BF16
    assert Predictor(detector, Config(model=detector.config), "cpu").precision.dtype is None  # amp: true
    image = tiny_batch(seed=2).images[0].clamp(-2, 2).add(2).mul(60)  # [3, 128, 160] on 0..240
    got = predictor(image)
    batch = collate([prepare_image_for_inference(image, config.data)], size_divisor=config.data.size_divisor)
    _assert_same_detections(got, _fp32_postprocess_of_bf16_outputs(detector, batch))


def test_float16_on_the_cpu_is_bitwise_fp32(tmp_path: Path) -> None:
    """``amp: true`` / ``float16`` configs keep their exact fp32 behaviour on the CPU."""
    from ladet.checkpoint_io import load_checkpoint

    train(tiny_config(epochs=1, amp=False), tmp_path / "fp32", components=fake_components())
    train(tiny_config(epochs=1, amp="float16"), tmp_path / "fp16", components=fake_components())
    first = load_checkpoint(tmp_path / "fp32" / "latest.pth")["model"]
    second = load_checkpoint(tmp_path / "fp16" / "latest.pth")["model"]
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_train_with_bf16_policy_runs_the_method_under_autocast(tmp_path: Path) -> None:
    import engine_fakes

    seen: list[bool] = []
    original = engine_fakes.TinyMethod.forward

    def spying(self: Any, batch: Any) -> Any:
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(self, batch)

    engine_fakes.TinyMethod.forward = spying  # type: ignore[method-assign]
    try:
        metrics = train(tiny_config(epochs=1, amp="bfloat16"), tmp_path, components=fake_components())
    finally:
        engine_fakes.TinyMethod.forward = original  # type: ignore[method-assign]
    assert seen and all(seen)
    assert metrics["num_images"] == 5


# ---------------------------------------------------------------------------------- CUDA only
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_float16_with_grad_scaler_and_no_teacher_autocast_when_amp_is_off(
    references: dict[str, NetworkReference],
) -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    config = method_config("lad", teacher=references["teacher"])
    method = build_method(config, "cuda").to(device)
    teacher_autocast: list[bool] = []
    method.teacher_detector().head.register_forward_hook(
        lambda module, inputs, outputs: teacher_autocast.append(torch.is_autocast_enabled("cuda"))
    )
    for amp, expected in ((False, False), ("float16", True)):
        precision = precision_policy(amp, device)
        scaler = precision.grad_scaler()
        assert scaler.is_enabled() == (amp == "float16")
        optimizer = torch.optim.SGD(method.parameters(), lr=0.005, momentum=0.9)
        teacher_autocast.clear()
        for seed in range(3):
            batch = tiny_batch(seed=seed).to(device)
            with precision.autocast():
                losses = method(batch)
            total = sum(value.float() for key, value in losses.items() if key.startswith("loss_"))
            assert torch.isfinite(total)
            optimizer.zero_grad()
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
        assert teacher_autocast == [expected] * 3
        if amp == "float16":
            assert scaler.get_scale() > 0
    detector = _low_threshold_detector().to(device)
    batch = tiny_batch(seed=0).to(device)
    with torch.no_grad(), precision_policy("float16", device).autocast():
        outputs = detector(batch.images)
        grid = detector.anchor_grid(outputs.level_sizes, device)
        inside = postprocess_detections(
            outputs, grid, detector.box_coder, batch.image_sizes, batch.scale_factors, detector.config.test
        )
    outside = postprocess_detections(
        outputs.float(),
        grid,
        detector.box_coder,
        batch.image_sizes,
        batch.scale_factors,
        detector.config.test,
    )
    _assert_same_detections(inside, outside)
