"""Step time and peak memory of LAD, SoLAD and CoLAD against the baseline PAA step (not a test).

One training step = forward (+ teacher forward) + assignment + loss + backward, on identical
synthetic input (random image, a few GT boxes per image). Networks have random weights (no
download, no checkpoint needed): LAD/SoLAD use an R101 PAA teacher and an R50 student, CoLAD an
R50 PAA network 1 and an R101 COP network 2 (the released configs), the baseline a PAA-R50.

Each method runs in a fresh subprocess so that the peak memory of one does not hide another's:
on CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth of the process' peak RSS
(``resource.getrusage``) from just before the networks are built.

Usage:
    python -m benchmarks.distill_step                       # 800x1333, batch 2, 3 repeats
    python -m benchmarks.distill_step --height 320 --width 512 --batch 1 --repeats 2

Output, one line per method:
    method=lad step_s=... baseline_step_s=... teacher_forward_s=... peak_mb=... baseline_peak_mb=...

Measured (2026-11-24, shared 2-core CPU, 1 thread, reduced size 384x640, batch 2, 2 repeats;
timings are noisy because other jobs shared the cores; the full 800x1333 size was not run):
    method=lad step_s=21.060 baseline_step_s=11.818 teacher_forward_s=5.694 peak_mb=1298 baseline_peak_mb=1105
    method=solad step_s=15.237 baseline_step_s=11.818 teacher_forward_s=6.749 peak_mb=1367 baseline_peak_mb=1105
    method=colad step_s=26.441 baseline_step_s=11.818 teacher_forward_s=n/a peak_mb=2533 baseline_peak_mb=1105
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import torch

from ladet.config.schema import KnowledgeDistillationConfig, ModelConfig
from ladet.methods import BaselineMethod, CoLADMethod, LADMethod, SoLADMethod, TrainingMethod
from ladet.models.detector import build_detector
from ladet.structures import Batch

METHODS = ("baseline", "lad", "solad", "colad")
# CoLAD's second network (R101 + COP) trained alone: its target is the sum of both baselines
SECOND_BASELINE = "baseline_r101cop"


def model_config(depth: int, head_type: str = "paa", box_loss_weighting: str = "iou") -> ModelConfig:
    config = ModelConfig(num_classes=80)
    config.backbone.depth = depth
    config.backbone.weights = None
    config.head.type = head_type
    config.loss.box_loss_weighting = box_loss_weighting
    return config


def build(name: str) -> TrainingMethod:
    if name == "baseline":
        return BaselineMethod(build_detector(model_config(50)))
    if name == SECOND_BASELINE:
        return BaselineMethod(build_detector(model_config(101, "cop")))
    student = build_detector(model_config(50, box_loss_weighting="mean"))
    if name == "lad":
        return LADMethod(student, build_detector(model_config(101)))
    if name == "solad":
        kd = KnowledgeDistillationConfig(cls_weight=2.0, iou_weight=10.0, min_iou=0.5)
        return SoLADMethod(student, build_detector(model_config(101)), kd)
    if name == "colad":
        return CoLADMethod(student, build_detector(model_config(101, "cop", "mean")))
    raise ValueError(f"unknown method {name!r}; valid: {list(METHODS)}")


def synthetic_batch(height: int, width: int, batch_size: int, device: torch.device) -> Batch:
    """Random images padded to multiples of 32 and 6 GT boxes per image."""
    padded_height, padded_width = -(-height // 32) * 32, -(-width // 32) * 32
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, padded_height, padded_width, generator=generator)
    corners = torch.rand(batch_size, 6, 2, generator=generator) * torch.tensor([width * 0.7, height * 0.7])
    sizes = 32 + torch.rand(batch_size, 6, 2, generator=generator) * torch.tensor([width * 0.3, height * 0.3])
    boxes = torch.cat([corners, corners + sizes], dim=-1)
    labels = torch.randint(0, 80, (batch_size, 6), generator=generator)
    sizes_tensor = torch.tensor([[height, width]] * batch_size)
    return Batch(
        images=images,
        image_sizes=sizes_tensor,
        padded_sizes=torch.tensor([[padded_height, padded_width]] * batch_size),
        scale_factors=torch.ones(batch_size, 2),
        original_sizes=sizes_tensor.clone(),
        gt_boxes=list(boxes),
        gt_labels=list(labels),
        image_ids=list(range(batch_size)),
    ).to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs in the child process: build, warm up once, time ``repeats`` steps."""
    device = torch.device(args.device)
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    method = build(name).to(device).train()
    batch = synthetic_batch(args.height, args.width, args.batch, device)
    parameters = [parameter for parameter in method.parameters() if parameter.requires_grad]
    use_amp = args.amp and device.type == "cuda"

    def step() -> None:
        with torch.autocast(device_type=device.type, enabled=use_amp):
            losses = method(batch)
        total = sum(value for key, value in losses.items() if key.startswith("loss_"))
        total.backward()
        for parameter in parameters:
            parameter.grad = None

    step()  # warm-up (allocator, anchor cache)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.repeats):
        step()
    synchronize(device)
    step_seconds = (time.perf_counter() - start) / args.repeats

    teacher_seconds = None
    if method.teacher_detector() is not None:
        method.teacher_outputs(batch.images)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.repeats):
            method.teacher_outputs(batch.images)
        synchronize(device)
        teacher_seconds = (time.perf_counter() - start) / args.repeats
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb) / 1024
    return {"step_s": step_seconds, "teacher_forward_s": teacher_seconds, "peak_mb": peak_mb}


def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--only",
        name,
        "--height",
        str(args.height),
        "--width",
        str(args.width),
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
    ] + (["--amp"] if args.amp else [])
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    parser.add_argument("--amp", action="store_true", help="autocast the step on CUDA")
    parser.add_argument("--methods", nargs="+", default=list(METHODS[1:]), choices=METHODS[1:])
    parser.add_argument("--only", choices=(*METHODS, SECOND_BASELINE), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only is not None:
        print(json.dumps(measure(args.only, args)))
        return
    baseline = run_child("baseline", args)
    print(
        f"# device={args.device} size={args.height}x{args.width} batch={args.batch} repeats={args.repeats} "
        f"threads={args.threads} amp={args.amp}",
        flush=True,
    )
    for name in args.methods:
        result = run_child(name, args)
        teacher = result["teacher_forward_s"]
        extra = ""
        if name == "colad":
            second = run_child(SECOND_BASELINE, args)
            extra = (
                f" second_network_baseline_step_s={second['step_s']:.3f}"
                f" baseline_sum_s={baseline['step_s'] + second['step_s']:.3f}"
            )
        print(
            f"method={name} step_s={result['step_s']:.3f} baseline_step_s={baseline['step_s']:.3f} "
            f"teacher_forward_s={'n/a' if teacher is None else f'{teacher:.3f}'} "
            f"peak_mb={result['peak_mb']:.0f} baseline_peak_mb={baseline['peak_mb']:.0f}{extra}",
            flush=True,
        )


if __name__ == "__main__":
    main()
