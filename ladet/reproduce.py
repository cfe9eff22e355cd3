"""One-command reproduction of a miniature paper Table 2 on the built-in dataset.

``python -m ladet.reproduce --out runs/demo [--budget small] [--seeds 0 1 2] [--methods ...]``

1. generates the built-in shapes dataset if it is missing (``make_builtin_dataset``);
2. trains the teacher (``configs/demo/paa_r34_fpn_1x8_builtin_teacher.yaml``) with the real
   training engine (``ladet.engine.trainer.train``);
3. trains the students (baseline, LAD, SoLAD, optionally KD) with identical budgets and seeds;
4. evaluates each (the engine's final evaluation) and writes ``table2.md`` / ``table2.json``
   (method, teacher, AP, AP50, AP75, APs, APm, APl, ΔAP vs the baseline; mean ± sample std over
   seeds) and prints the table;
5. draws detection pictures of the best student and one assignment picture of the LAD student.

Budgets only change schedule/size settings, through config overrides passed to ``load_config``
(the demo config files stay as they are). Finished runs are reused when the command is
repeated with the same budget (``--force`` retrains).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladet.reproduce_table import TABLE_METRICS, build_rows, format_markdown_table, rows_to_json

DEMO_DIR = Path("configs/demo")
TEACHER_CONFIG = DEMO_DIR / "paa_r34_fpn_1x8_builtin_teacher.yaml"
STUDENT_CONFIGS: dict[str, Path] = {
    "baseline": DEMO_DIR / "paa_r18_fpn_1x8_builtin_demo.yaml",
    "kd": DEMO_DIR / "kd_r18-paa-r34_fpn_1x8_builtin_demo.yaml",
    "lad": DEMO_DIR / "lad_r18-paa-r34_fpn_1x8_builtin_demo.yaml",
    "solad": DEMO_DIR / "solad_r18-paa-r34_fpn_1x8_builtin_demo.yaml",
}
TEACHER_DESCRIPTION = "PAA-R34 (demo)"
RESULT_FILE = "reproduce_result.json"


@dataclass(frozen=True)
class Budget:
    """Schedule and data size of one budget; ``overrides`` apply to the teacher and every student."""

    name: str
    num_train: int  # images of the generated dataset
    num_val: int
    image_size: tuple[int, int]  # side range of the generated images
    data_dir: str | None  # None: inside --out (private tiny dataset)
    teacher_overrides: tuple[str, ...] = field(default_factory=tuple)
    student_overrides: tuple[str, ...] = field(default_factory=tuple)
    common_overrides: tuple[str, ...] = field(default_factory=tuple)


# settings shared by the "small" and "full" budgets (native 128-160 px images, evaluation at the end)
BUILTIN_SMALL_OVERRIDES = (
    "data.max_size=160",
    "data.short_size=128",
    "data.workers_per_gpu=1",
    "train.warmup_iters=100",
    "train.eval_interval=0",
    "train.checkpoint_interval=0",
)

BUDGETS: dict[str, Budget] = {
    # seconds: a few iterations on tiny images, for the integration test
    "smoke": Budget(
        name="smoke",
        num_train=8,
        num_val=4,
        image_size=(96, 128),
        data_dir=None,
        teacher_overrides=("train.epochs=1", "train.lr_steps=[]", "train.max_iters_per_epoch=2"),
        student_overrides=("train.epochs=1", "train.lr_steps=[]", "train.max_iters_per_epoch=2"),
        common_overrides=(
            "data.max_size=128",
            "data.short_size=96",
            "data.images_per_gpu=2",
            "data.test_images_per_gpu=4",
            "data.workers_per_gpu=0",
            "train.warmup_iters=2",
            "train.log_interval=1",
            "train.eval_interval=0",
            "train.checkpoint_interval=0",
        ),
    ),
    # ~25 minutes on 2 idle CPU cores in total: 800 generated images of 128-160 px, a 12-epoch
    # teacher (PAA-R34, ~0.6 s/iteration) and 6-epoch students (PAA-R18); AdamW from demo_base
    "small": Budget(
        name="small",
        num_train=800,
        num_val=200,
        image_size=(128, 160),
        data_dir="data/builtin_small",
        teacher_overrides=("train.epochs=12", "train.lr_steps=[10]"),
        student_overrides=("train.epochs=6", "train.lr_steps=[5]"),
        common_overrides=BUILTIN_SMALL_OVERRIDES,
    ),
    # twice the schedule of "small" on the same data (teacher 24 epochs, students 12)
    "full": Budget(
        name="full",
        num_train=800,
        num_val=200,
        image_size=(128, 160),
        data_dir="data/builtin_small",
        teacher_overrides=("train.epochs=24", "train.lr_steps=[20]"),
        student_overrides=("train.epochs=12", "train.lr_steps=[10]"),
        common_overrides=BUILTIN_SMALL_OVERRIDES,
    ),
}


def ensure_dataset(budget: Budget, out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Generates the built-in dataset of ``budget`` unless its annotation files already exist."""
    data_dir = Path(budget.data_dir) if budget.data_dir is not None else out_dir / "data"
    paths = {
        "train_ann_file": data_dir / "annotations" / "train.json",
        "train_image_dir": data_dir / "train",
        "val_ann_file": data_dir / "annotations" / "val.json",
        "val_image_dir": data_dir / "val",
    }
    if paths["train_ann_file"].is_file() and paths["val_ann_file"].is_file():
        return paths
    from ladet.data.builtin import make_builtin_dataset

    print(
        f"[reproduce] generating the built-in dataset in {data_dir} ({budget.num_train} train, {budget.num_val} val)"
    )
    return make_builtin_dataset(
        data_dir, seed=seed, num_train=budget.num_train, num_val=budget.num_val, image_size=budget.image_size
    )


def data_overrides(paths: dict[str, Path]) -> list[str]:
    """Points a config at the generated dataset."""
    return [
        f"data.train.ann_file={paths['train_ann_file']}",
        f"data.train.image_dir={paths['train_image_dir']}",
        f"data.val.ann_file={paths['val_ann_file']}",
        f"data.val.image_dir={paths['val_image_dir']}",
    ]


def run_overrides(
    budget: Budget, paths: dict[str, Path], seed: int, teacher_checkpoint: Path | None, is_teacher: bool
) -> list[str]:
    """All overrides of one training run (data paths, budget, seed, teacher checkpoint)."""
    overrides = data_overrides(paths) + list(budget.common_overrides)
    overrides += list(budget.teacher_overrides if is_teacher else budget.student_overrides)
    overrides.append(f"seed={seed}")
    if teacher_checkpoint is not None:
        overrides += [
            f"method.teacher.config={TEACHER_CONFIG}",
            f"method.teacher.checkpoint={teacher_checkpoint}",
            # the teacher is evaluated once in its own run, not again in every student's
            "method.evaluate_teacher=false",
        ]
    return overrides


def final_checkpoint(work_dir: Path) -> Path:
    """The checkpoint the engine writes at the end of training."""
    return work_dir / "latest.pth"


def train_or_reuse(
    config_path: Path, work_dir: Path, overrides: list[str], force: bool, device: str | None
) -> dict[str, Any]:
    """Trains one run with the real engine and returns its final metrics.

    A run whose ``reproduce_result.json`` records the same config and overrides is reused.
    """
    from ladet.config.loader import load_config
    from ladet.engine.trainer import train

    record_path = work_dir / RESULT_FILE
    key = {"config": str(config_path), "overrides": overrides}
    if not force and record_path.is_file() and final_checkpoint(work_dir).is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("key") == key:
            print(f"[reproduce] reusing {work_dir} (finished earlier with the same settings)")
            return record["metrics"]
    config = load_config(config_path, overrides)
    started = time.perf_counter()
    print(f"[reproduce] training {config_path} -> {work_dir}")
    metrics = train(config, work_dir, device=device)
    seconds = time.perf_counter() - started
    if not metrics or any(name not in metrics for name in TABLE_METRICS):
        raise RuntimeError(f"training {config_path} in {work_dir} returned no final evaluation: {metrics}")
    work_dir.mkdir(parents=True, exist_ok=True)
    record_path.write_text(
        json.dumps({"key": key, "metrics": metrics, "train_seconds": seconds}, indent=2), encoding="utf-8"
    )
    return metrics


def draw_pictures(
    config_path: Path,
    overrides: list[str],
    checkpoint: Path,
    val_ann_file: Path,
    val_image_dir: Path,
    out_dir: Path,
    num_images: int,
    device: str | None,
    assignment_config: tuple[Path, list[str], Path] | None,
) -> list[Path]:
    """Detection pictures of the best student and one assignment picture (LAD student)."""
    import torch
    from PIL import Image

    from ladet.config.loader import load_config
    from ladet.data.coco import parse_coco_annotations
    from ladet.data.collate import collate
    from ladet.data.transforms import prepare_image_for_inference
    from ladet.methods import build_method
    from ladet.vis.detections import draw_detections
    from ladet.vis.visualize_assign import load_method_weights, visualize_assignments

    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    records, _, class_names, _ = parse_coco_annotations(str(val_ann_file), train=False)
    image_paths = [val_image_dir / record.file_name for record in records[:num_images]]
    out_dir.mkdir(parents=True, exist_ok=True)
    config = load_config(config_path, overrides)
    method = build_method(config, target)
    load_method_weights(method, checkpoint)
    detector = method.evaluation_detector().to(target).eval()
    written: list[Path] = []
    for image_path in image_paths:
        batch = collate([prepare_image_for_inference(image_path, config.data)], config.data.size_divisor)
        with torch.no_grad():
            detections = detector.predict(batch.to(target))[0]
        with Image.open(image_path) as opened:
            picture = draw_detections(
                opened.convert("RGB"), detections, class_names, score_threshold=0.3, min_display_side=512
            )
        path = out_dir / f"{image_path.stem}_detections.png"
        picture.save(path)
        written.append(path)
    if assignment_config is not None and image_paths:
        assign_path, assign_overrides, assign_checkpoint = assignment_config
        written += visualize_assignments(
            load_config(assign_path, assign_overrides),
            str(assign_checkpoint),
            [str(image_paths[0])],
            str(out_dir),
            annotations=str(val_ann_file),
            device=str(target),
        )
    return written


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ladet reproduce",
        description="Train a teacher and baseline / LAD / SoLAD (/ KD) students on the built-in dataset "
        "and print a miniature paper Table 2.",
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (runs, table, pictures)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="small", help="schedule/size preset")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="student seeds (mean ± std if several)"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(STUDENT_CONFIGS),
        default=["baseline", "lad", "solad"],
        help="students to train (the teacher is always trained)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--force", action="store_true", help="retrain runs that finished earlier")
    parser.add_argument(
        "--pictures", type=int, default=3, help="detection pictures of the best student (0: none)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the whole reproduction; returns the process exit code."""
    arguments = parse_arguments(argv)
    started = time.perf_counter()
    budget = BUDGETS[arguments.budget]
    out_dir = Path(arguments.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in [TEACHER_CONFIG, *(STUDENT_CONFIGS[name] for name in arguments.methods)]:
        if not path.is_file():
            raise SystemExit(f"config {path} not found: run from the repository root")
    paths = ensure_dataset(budget, out_dir)

    teacher_dir = out_dir / "teacher"
    teacher_seed = arguments.seeds[0]
    teacher_overrides = run_overrides(budget, paths, teacher_seed, None, is_teacher=True)
    teacher_metrics = train_or_reuse(
        TEACHER_CONFIG, teacher_dir, teacher_overrides, arguments.force, arguments.device
    )
    teacher_checkpoint = final_checkpoint(teacher_dir)

    results: dict[str, list[dict[str, Any]]] = {}
    run_dirs: dict[str, list[Path]] = {}
    student_overrides: dict[str, list[str]] = {}
    for method in arguments.methods:
        for seed in arguments.seeds:
            work_dir = out_dir / f"{method}_seed{seed}"
            checkpoint = teacher_checkpoint if method != "baseline" else None
            overrides = run_overrides(budget, paths, seed, checkpoint, is_teacher=False)
            metrics = train_or_reuse(
                STUDENT_CONFIGS[method], work_dir, overrides, arguments.force, arguments.device
            )
            results.setdefault(method, []).append(metrics)
            run_dirs.setdefault(method, []).append(work_dir)
            student_overrides.setdefault(method, overrides)

    table_results = {"teacher": [teacher_metrics], **results}
    teachers = {method: ("" if method == "baseline" else TEACHER_DESCRIPTION) for method in results}
    rows = build_rows(table_results, teachers)
    for row in rows:  # the teacher row is a reference, not compared with the baseline
        if row.method == "teacher":
            row.delta_ap = None
    markdown = format_markdown_table(rows)
    wall_seconds = time.perf_counter() - started
    heading = (
        f"Miniature Table 2 on the built-in dataset (budget {budget.name}, seeds {arguments.seeds}, "
        f"COCO AP in %, mean ± sample std over seeds; ΔAP vs the baseline, seed by seed)."
    )
    (out_dir / "table2.md").write_text(
        f"{heading}\n\n{markdown}\n\nWall time: {wall_seconds:.0f} s\n", encoding="utf-8"
    )
    print("\n" + heading + "\n\n" + markdown + "\n", flush=True)

    pictures: list[str] = []
    students = list(results)  # the best student by mean AP, the baseline included
    if arguments.pictures > 0 and students:
        best = max(students, key=lambda method: sum(m["AP"] for m in results[method]) / len(results[method]))
        assignment = None
        if "lad" in results:
            assignment = (
                STUDENT_CONFIGS["lad"],
                student_overrides["lad"],
                final_checkpoint(run_dirs["lad"][0]),
            )
        written = draw_pictures(
            STUDENT_CONFIGS[best],
            student_overrides[best],
            final_checkpoint(run_dirs[best][0]),
            paths["val_ann_file"],
            paths["val_image_dir"],
            out_dir / "pictures",
            arguments.pictures,
            arguments.device,
            assignment,
        )
        pictures = [str(path) for path in written]
        print(f"[reproduce] pictures of the best student ({best}): {out_dir / 'pictures'}")
    wall_seconds = time.perf_counter() - started
    document = {
        "budget": budget.name,
        "seeds": arguments.seeds,
        "wall_seconds": wall_seconds,
        "teacher": {
            "config": str(TEACHER_CONFIG),
            "checkpoint": str(teacher_checkpoint),
            "metrics": teacher_metrics,
        },
        "runs": {
            method: [
                {"seed": seed, "work_dir": str(path), "metrics": metrics}
                for seed, path, metrics in zip(
                    arguments.seeds, run_dirs[method], results[method], strict=True
                )
            ]
            for method in results
        },
        "table": rows_to_json(rows),
        "pictures": pictures,
    }
    (out_dir / "table2.json").write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    print(
        f"[reproduce] wrote {out_dir / 'table2.md'} and {out_dir / 'table2.json'} ({wall_seconds:.0f} s in total)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
