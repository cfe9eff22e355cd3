"""CUDA self-check: ``python -m ladet.selfcheck`` (or ``bash scripts/gpu_check.sh``) on a GPU machine.

Prints one line per check (``PASS`` / ``FAIL`` / ``SKIP`` and the measured figures) and exits 1
if a check failed. Networks have random weights (nothing is downloaded); inputs are synthetic.

Checks, in this order:

1. ``deterministic``: ``set_deterministic(True)`` (what ``--deterministic`` does) and one training
   step of the baseline and of LAD, and a prediction, do not raise.
2. ``amp-train``: PAA-R50 baseline at 800x1333, batch 2, a few iterations under each policy
   (float16 with GradScaler, bfloat16 without): finite losses, step time, peak memory.
3. ``lad-teacher``: LAD, R50 student and R101 teacher: step time against the baseline step plus
   the teacher forward, peak memory against the baseline's.
4. ``host-syncs``: synchronising CUDA calls of one PAA assignment (``set_sync_debug_mode``) at
   5/20/50 GTs per image, the EM run to ``max_iter`` so the counts compare: must be equal.
5. ``eval-predict``: ``evaluate`` and ``Predictor`` under each policy: the voted boxes equal an
   fp32 post-processing of the same head outputs within 1e-2 px.
6. ``nccl-2proc``: two processes (NCCL, SyncBatchNorm, DDP, float16) end with identical weights;
   skipped with fewer than two GPUs.

On a machine without CUDA it says so and exits 0 (``--device cpu`` runs the checks on the CPU at a
size given on the command line; the test suite uses that to exercise this module).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ladet.config.schema import AssignerConfig, BackboneDepth, BoxLossWeighting, Config, ModelConfig, choices
from ladet.engine.precision import Precision, precision_policy
from ladet.methods import BaselineMethod, LADMethod, TrainingMethod
from ladet.models.detector import PAADetector, build_detector
from ladet.models.outputs import HeadOutputs
from ladet.models.postprocess import postprocess_detections
from ladet.structures import Batch, Detections

NUM_CLASSES = 80
VOTED_BOX_TOLERANCE_PX = 1e-2
CHANNELS = [256]  # FPN / head width of every network built here (``--channels``)


class CheckFailed(RuntimeError):
    """A check ran but its result is wrong."""


def _report(name: str, status: str, details: str) -> None:
    print(f"{name:13s} {status:4s} {details}", flush=True)


def _model_config(
    depth: BackboneDepth,
    box_loss_weighting: BoxLossWeighting = "iou",
    norm_eval: bool = True,
    channels: int = 256,
) -> ModelConfig:
    """PAA with a ResNet-``depth``, random weights; ``channels``: FPN and head width (256 released)."""
    config = ModelConfig(num_classes=NUM_CLASSES)
    config.neck.out_channels = config.head.feat_channels = channels
    config.backbone.depth = depth
    config.backbone.weights = None
    config.backbone.norm_eval = norm_eval
    config.loss.box_loss_weighting = box_loss_weighting
    return config


def _detector(depth: BackboneDepth, seed: int, **kwargs: Any) -> PAADetector:
    kwargs.setdefault("channels", CHANNELS[0])
    torch.manual_seed(seed)
    return build_detector(_model_config(depth, **kwargs))


def synthetic_batch(
    height: int, width: int, batch_size: int, num_gts: int, device: torch.device, seed: int
) -> Batch:
    """Random images (padded to multiples of 32) with ``num_gts`` COCO-like boxes per image."""
    padded_height, padded_width = -(-height // 32) * 32, -(-width // 32) * 32
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, padded_height, padded_width, generator=generator)
    log_sides = torch.empty(batch_size, num_gts, 2).uniform_(
        np.log(8.0), np.log(min(height, width) / 2), generator=generator
    )
    sides = log_sides.exp()  # [B, G, 2]
    corners = torch.rand(batch_size, num_gts, 2, generator=generator) * (
        torch.tensor([width, height]) - sides
    )
    boxes = torch.cat([corners, corners + sides], dim=-1)  # [B, G, 4]
    sizes = torch.tensor([[height, width]] * batch_size)
    return Batch(
        images=images,
        image_sizes=sizes,
        padded_sizes=torch.tensor([[padded_height, padded_width]] * batch_size),
        scale_factors=torch.ones(batch_size, 2),
        original_sizes=sizes.clone(),
        gt_boxes=list(boxes),
        gt_labels=list(torch.randint(0, NUM_CLASSES, (batch_size, num_gts), generator=generator)),
        image_ids=list(range(batch_size)),
    ).to(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def train_steps(
    method: TrainingMethod, batch: Batch, precision: Precision, iterations: int
) -> tuple[list[float], float, float]:
    """One warm-up and ``iterations`` timed steps as the engine runs them (autocast, scaler, SGD).

    Returns:
        (total loss of every step, median step seconds, peak memory in GiB).
    """
    device = batch.images.device
    method.to(device).train()
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    scaler = precision.grad_scaler()
    losses: list[float] = []
    seconds: list[float] = []
    _reset_peak(device)
    for step in range(iterations + 1):
        start = time.perf_counter()
        with precision.autocast():
            outputs = method(batch)
        total = torch.stack(
            [value.float() for key, value in outputs.items() if key.startswith("loss_")]
        ).sum()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(total.detach()))
        _synchronize(device)
        if step > 0:  # step 0 warms the allocator, cuDNN and the anchor caches up
            seconds.append(time.perf_counter() - start)
    if not all(np.isfinite(losses)):
        raise CheckFailed(f"non-finite losses {losses}")
    return losses, statistics.median(seconds), _peak_gib(device)


def teacher_forward_seconds(
    method: TrainingMethod, batch: Batch, precision: Precision, repeats: int
) -> float:
    seconds = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with precision.autocast():
            method.teacher_outputs(batch.images)
        _synchronize(batch.images.device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:])


# ---------------------------------------------------------------------------------- the checks
def check_deterministic(args: argparse.Namespace, device: torch.device, precision: Precision) -> str:
    from ladet.engine.distributed import set_deterministic

    set_deterministic(True)
    try:
        batch = synthetic_batch(args.height, args.width, args.batch, 6, device, seed=1)
        train_steps(BaselineMethod(_detector(args.student_depth, 0)), batch, precision, 1)
        lad = LADMethod(
            _detector(args.student_depth, 0, box_loss_weighting="mean"), _detector(args.teacher_depth, 1)
        )
        train_steps(lad, batch, precision, 1)
        detector = _detector(args.student_depth, 0).to(device).eval()
        with torch.no_grad(), precision.autocast():
            detector.predict(batch)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    return f"policy={precision.name} baseline+LAD steps and predict raise nothing under use_deterministic_algorithms"


def check_amp_train(
    args: argparse.Namespace, device: torch.device, precision: Precision, baselines: dict[str, Any]
) -> str:
    batch = synthetic_batch(args.height, args.width, args.batch, 6, device, seed=2)
    losses, seconds, peak = train_steps(
        BaselineMethod(_detector(args.student_depth, 0)), batch, precision, args.iterations
    )
    baselines[precision.name] = (seconds, peak)
    return (
        f"policy={precision.name} R{args.student_depth} {args.height}x{args.width} batch={args.batch} "
        f"iters={args.iterations} losses={','.join(f'{loss:.3f}' for loss in losses)} "
        f"step_s={seconds:.3f} peak_gib={peak:.2f}"
    )


def check_lad_teacher(
    args: argparse.Namespace, device: torch.device, precision: Precision, baselines: dict[str, Any]
) -> str:
    batch = synthetic_batch(args.height, args.width, args.batch, 6, device, seed=2)
    student = _detector(args.student_depth, 0, box_loss_weighting="mean")
    method = LADMethod(student, _detector(args.teacher_depth, 1))
    _, seconds, peak = train_steps(method, batch, precision, args.iterations)
    teacher_seconds = teacher_forward_seconds(method, batch, precision, args.iterations)
    baseline_seconds, baseline_peak = baselines[precision.name]
    return (
        f"policy={precision.name} teacher=R{args.teacher_depth} step_s={seconds:.3f} "
        f"baseline_step_s={baseline_seconds:.3f} teacher_forward_s={teacher_seconds:.3f} "
        f"step/(baseline+teacher)={seconds / (baseline_seconds + teacher_seconds):.2f} "
        f"peak_gib={peak:.2f} peak_ratio={peak / baseline_peak:.2f}"
    )


def _assignment_inputs(num_gts: int, args: argparse.Namespace, device: torch.device) -> tuple[Any, ...]:
    detector = _detector(args.student_depth, 0)
    batch = synthetic_batch(args.height, args.width, args.batch, num_gts, device, seed=num_gts)
    level_sizes = [
        (-(-batch.images.shape[2] // s), -(-batch.images.shape[3] // s))
        for s in detector.config.anchors.strides
    ]
    grid = detector.anchor_grid(level_sizes, device)
    valid_mask = detector.anchor_generator.valid_mask(grid, batch.padded_sizes)
    generator = torch.Generator().manual_seed(num_gts)
    outputs = HeadOutputs(
        class_scores=(torch.randn(args.batch, grid.num_anchors, NUM_CLASSES, generator=generator) - 4.0).to(
            device
        ),
        box_deltas=(torch.randn(args.batch, grid.num_anchors, 4, generator=generator) * 0.5).to(device),
        iou_logits=torch.randn(args.batch, grid.num_anchors, generator=generator).to(device),
        level_sizes=level_sizes,
    )
    return outputs, grid, valid_mask, batch.gt_boxes, batch.gt_labels


def count_synchronisations(function: Callable[[], Any], device: torch.device) -> int:
    """Synchronising CUDA calls of ``function()`` as reported by ``torch.cuda.set_sync_debug_mode``."""
    if device.type != "cuda":
        function()
        return -1
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            function()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)


def check_host_syncs(args: argparse.Namespace, device: torch.device) -> str:
    from ladet.assign.paa import PAAAssigner
    from ladet.models.box_coder import DeltaBoxCoder

    counts = {}
    for tolerance_name, tolerance in (("max_iter", -1.0), ("default", AssignerConfig().gmm_tolerance)):
        assigner = PAAAssigner(AssignerConfig(gmm_tolerance=tolerance), NUM_CLASSES, DeltaBoxCoder())
        for num_gts in args.gts:
            inputs = _assignment_inputs(num_gts, args, device)
            assigner.assign(*inputs)  # a new grid's window tables are built once per grid
            counts[tolerance_name, num_gts] = count_synchronisations(
                partial(assigner.assign, *inputs), device
            )
    if device.type != "cuda":
        return f"gts={'/'.join(map(str, args.gts))} assigned; syncs are counted on CUDA only (CPU: benchmarks/host_syncs.py)"
    fixed = [counts["max_iter", n] for n in args.gts]
    default = [counts["default", n] for n in args.gts]
    gts = "/".join(str(n) for n in args.gts)
    text = f"gts={gts} syncs={'/'.join(map(str, fixed))} (EM to max_iter) default_tolerance={'/'.join(map(str, default))}"
    if len(set(fixed)) != 1:
        raise CheckFailed(text + ": the count grows with the GTs")
    return text


def _fp32_oracle(detector: PAADetector, outputs: HeadOutputs, batch: Batch) -> list[Detections]:
    """Post-processing of the captured head outputs in plain fp32, outside any autocast region."""
    grid = detector.anchor_grid(outputs.level_sizes, batch.images.device)
    return postprocess_detections(
        outputs.float(),
        grid,
        detector.box_coder,
        batch.image_sizes,
        batch.scale_factors,
        detector.config.test,
    )


def _max_box_difference(got: list[Detections], expected: list[Detections]) -> float:
    worst = 0.0
    for first, second in zip(got, expected, strict=True):
        if first.boxes.shape != second.boxes.shape or not torch.equal(
            first.labels.cpu(), second.labels.cpu()
        ):
            raise CheckFailed(f"detections differ: {len(first.boxes)} vs {len(second.boxes)} boxes")
        if len(first.boxes):
            worst = max(worst, float((first.boxes.cpu().float() - second.boxes.cpu().float()).abs().max()))
    return worst


def check_eval_predict(args: argparse.Namespace, device: torch.device, precision: Precision) -> str:
    from ladet.data.collate import collate
    from ladet.data.transforms import prepare_image_for_inference
    from ladet.engine.evaluate import DetectionCollector, evaluate
    from ladet.predictor import Predictor

    detector = _detector(args.student_depth, 3).to(device).eval()
    detector.config.test.score_threshold = 0.0  # random weights score ~0.01: keep their boxes
    captured: list[HeadOutputs] = []
    hook = detector.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        batch = synthetic_batch(args.height, args.width, args.batch, 0, device, seed=4)
        collector = DetectionCollector()
        evaluate(detector, [batch], collector, device, print_table=False, precision=precision)
        evaluate_difference = _max_box_difference(
            collector.detections, _fp32_oracle(detector, captured[-1], batch)
        )
        config = Config(model=detector.config)
        config.data.short_size, config.data.max_size = args.height, args.width
        predictor = Predictor(detector, config, device, precision=precision)
        image = np.random.default_rng(5).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
        predicted = predictor(image)
        item = prepare_image_for_inference(image, config.data)
        predict_batch = collate([item], size_divisor=config.data.size_divisor).to(device)
        predict_difference = _max_box_difference(
            predicted, _fp32_oracle(detector, captured[-1], predict_batch)
        )
    finally:
        hook.remove()
    count = sum(len(d.boxes) for d in collector.detections) + sum(len(d.boxes) for d in predicted)
    text = (
        f"policy={precision.name} head_dtype={str(captured[0].class_scores.dtype).removeprefix('torch.')} "
        f"detections={count} max_voted_box_diff_px evaluate={evaluate_difference:.2e} predict={predict_difference:.2e}"
    )
    if count == 0 or max(evaluate_difference, predict_difference) > VOTED_BOX_TOLERANCE_PX:
        raise CheckFailed(text + f" (limit {VOTED_BOX_TOLERANCE_PX} px, at least one detection)")
    return text


def _nccl_worker(rank: int, port: int, directory: str) -> None:
    """One of two processes: DDP + SyncBatchNorm + float16, 3 steps; writes its weights' checksum."""
    from ladet.engine.distributed import init_distributed, shutdown_distributed
    from ladet.engine.trainer import wrap_for_training

    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    context = init_distributed("cuda")
    try:
        config = Config(model=_model_config(18, norm_eval=False, channels=256))
        method = BaselineMethod(_detector(18, 0, norm_eval=False, channels=256)).to(context.device)
        model = wrap_for_training(method, config, context)
        synced = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
        batch = synthetic_batch(256, 320, 2, 4, context.device, seed=10 + rank)
        precision = precision_policy("float16", context.device)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
        scaler = precision.grad_scaler()
        for _ in range(3):
            with precision.autocast():
                outputs = model(batch)
            total = torch.stack([v.float() for k, v in outputs.items() if k.startswith("loss_")]).sum()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
        checksum = sum(float(p.double().sum()) for p in method.state_dict().values() if p.is_floating_point())
        with open(os.path.join(directory, f"rank{rank}.txt"), "w", encoding="utf-8") as stream:
            stream.write(f"{checksum!r} {synced}")
    finally:
        shutdown_distributed()


def check_nccl(device: torch.device) -> str | None:
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        return None
    import socket

    import torch.multiprocessing as multiprocessing

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        from ladet import selfcheck  # the importable module, also when this one runs as __main__

        multiprocessing.spawn(selfcheck._nccl_worker, args=(port, directory), nprocs=2, join=True)
        results = [Path(directory, f"rank{r}.txt").read_text(encoding="utf-8").split() for r in (0, 1)]
    text = f"checksums={results[0][0]}/{results[1][0]} sync_batchnorm_layers={results[0][1]}"
    if results[0][0] != results[1][0] or int(results[0][1]) == 0:
        raise CheckFailed(text + ": the ranks disagree or no SyncBatchNorm")
    return text


# ------------------------------------------------------------------------------------- driver
def _run(name: str, check: Callable[[], str | None]) -> bool:
    start = time.perf_counter()
    try:
        details = check()
    except Exception as error:  # noqa: BLE001 - a failing check is reported, the others still run
        _report(name, "FAIL", f"{type(error).__name__}: {error}".replace("\n", " "))
        return False
    if details is None:
        _report(name, "SKIP", "needs two CUDA devices")
    else:
        _report(name, "PASS", f"{details} ({time.perf_counter() - start:.0f} s)")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ladet.selfcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3, help="timed training steps per check")
    parser.add_argument("--student-depth", type=int, default=50, choices=choices(BackboneDepth))
    parser.add_argument("--teacher-depth", type=int, default=101, choices=choices(BackboneDepth))
    parser.add_argument("--gts", type=int, nargs="+", default=[5, 20, 50], help="GTs per image (host-syncs)")
    parser.add_argument("--channels", type=int, default=256, help="FPN/head width (CPU smoke runs)")
    parser.add_argument("--policies", nargs="+", default=["float16", "bfloat16"], help="train.amp values")
    args = parser.parse_args(argv)
    CHANNELS[0] = args.channels
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"selfcheck: no CUDA device is present (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}); nothing checked. Run it on a GPU machine.",
            flush=True,
        )
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"selfcheck: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    policies = [precision_policy({"false": False, "true": True}.get(p, p), device) for p in args.policies]
    baselines: dict[str, Any] = {}
    results = [_run("deterministic", partial(check_deterministic, args, device, policies[0]))]
    results += [_run("amp-train", partial(check_amp_train, args, device, p, baselines)) for p in policies]
    results += [_run("lad-teacher", partial(check_lad_teacher, args, device, p, baselines)) for p in policies]
    results.append(_run("host-syncs", partial(check_host_syncs, args, device)))
    results += [_run("eval-predict", partial(check_eval_predict, args, device, p)) for p in policies]
    results.append(_run("nccl-2proc", partial(check_nccl, device)))
    failed = results.count(False)
    print(f"selfcheck: {len(results) - failed} passed or skipped, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
