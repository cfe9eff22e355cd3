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
(the demo config files stay as they are). Each budget has its own folder (``--out``/BUDGET,
e.g. ``runs/demo/small``): budgets never share runs. Repeating the command reuses finished runs,
resumes an interrupted one from its ``latest.pth`` (``--resume auto``), and restarts a run whose
settings changed; ``--force`` retrains everything. Runs keep ``latest.pth`` only
(``train.keep_checkpoints=0``); see :data:`DISK_NOTE` for the disk a budget needs.

Progress: every run's bars carry "run 2/4: baseline" and a line before each run gives the time
spent and an estimate of the time left for the whole command.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladet.evaluation.metrics_json import dumps_strict, metrics_to_json
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
STARTED_FILE = "reproduce_started.json"  # the settings of a run in progress (to resume it)
# what each budget leaves on disk (measured: a PAA-R34 teacher checkpoint with AdamW state is
# ~270 MB, a PAA-R18 student's ~141 MB; only latest.pth is kept per run)
DISK_NOTE = "about 0.7 GB per budget folder (teacher + 3 students), plus 30 MB of generated data"
# a student iteration vs a teacher one (small budget, 2 cores: R18 baseline ~0.4x; distilled
# students also run the teacher's forward, ~0.8x), used until that student has been timed
STUDENT_COST = {"baseline": 0.45}
DISTILLED_STUDENT_COST = 0.8


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
    "train.keep_checkpoints=0",
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
            "train.keep_checkpoints=0",
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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def reusable_metrics(work_dir: Path, key: dict[str, Any]) -> tuple[dict[str, Any], float] | None:
    """(metrics, training seconds) of a run that finished with the settings ``key``, else None."""
    record = _read_json(work_dir / RESULT_FILE)
    if record is None or record.get("key") != key or not final_checkpoint(work_dir).is_file():
        return None
    return record["metrics"], float(record.get("train_seconds", 0.0))


def train_or_reuse(
    config_path: Path, work_dir: Path, overrides: list[str], force: bool, device: str | None
) -> dict[str, Any]:
    """Trains one run with the real engine and returns its final metrics.

    A run whose ``reproduce_result.json`` records the same config and overrides is reused; an
    interrupted run with the same settings (``reproduce_started.json``) is resumed from its
    ``latest.pth``; a folder holding a run with other settings (or ``force``) is cleared first.
    """
    from ladet.config.loader import load_config
    from ladet.engine.trainer import train

    key = {"config": str(config_path), "overrides": overrides}
    finished = None if force else reusable_metrics(work_dir, key)
    if finished is not None:
        print(f"[reproduce] reusing {work_dir} (finished earlier with the same settings)")
        return finished[0]
    started_record = _read_json(work_dir / STARTED_FILE)
    resume = None
    if not force and started_record == {"key": key} and final_checkpoint(work_dir).is_file():
        resume = "auto"
        print(f"[reproduce] resuming the interrupted run in {work_dir}")
    elif work_dir.exists():
        reason = "--force" if force else "its settings changed" if started_record else "it is incomplete"
        print(f"[reproduce] clearing {work_dir} ({reason})")
        shutil.rmtree(work_dir)
    config = load_config(config_path, overrides)
    started = time.perf_counter()
    print(f"[reproduce] training {config_path} -> {work_dir}", flush=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / STARTED_FILE).write_text(json.dumps({"key": key}), encoding="utf-8")
    metrics = train(config, work_dir, resume=resume, device=device)
    seconds = time.perf_counter() - started
    if not metrics or any(name not in metrics for name in TABLE_METRICS):
        raise RuntimeError(f"training {config_path} in {work_dir} returned no final evaluation: {metrics}")
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / RESULT_FILE).write_text(
        dumps_strict({"key": key, "metrics": metrics_to_json(metrics), "train_seconds": seconds}),
        encoding="utf-8",
    )
    return metrics


@dataclass
class PlannedRun:
    """One training run of the command, for the overall progress line."""

    name: str  # "teacher", "baseline", ...
    config_path: Path
    work_dir: Path
    overrides: list[str]
    iterations: int  # epochs x iterations per epoch


def planned_iterations(config_path: Path, overrides: list[str], num_train: int) -> int:
    """Optimiser steps of one run: epochs x iterations per epoch (one process)."""
    from ladet.config.loader import load_config

    config = load_config(config_path, overrides)
    per_epoch = -(-num_train // config.data.images_per_gpu)
    if config.train.max_iters_per_epoch is not None:
        per_epoch = min(per_epoch, config.train.max_iters_per_epoch)
    return config.train.epochs * per_epoch


class OverallProgress:
    """ "run 2/4: baseline" prefixes and an estimate of the time left, from the runs timed so far."""

    def __init__(self, runs: list[PlannedRun]) -> None:
        self.runs = runs
        self.started = time.perf_counter()
        self.seconds_per_iteration: dict[str, float] = {}

    def rate(self, name: str) -> float | None:
        if name in self.seconds_per_iteration:
            return self.seconds_per_iteration[name]
        teacher = self.seconds_per_iteration.get("teacher")
        if name == "teacher" or teacher is None:
            return None
        estimate = teacher * STUDENT_COST.get(name, DISTILLED_STUDENT_COST)
        if name != "baseline":  # never below a distilled student already timed
            timed = [
                rate for key, rate in self.seconds_per_iteration.items() if key not in ("teacher", "baseline")
            ]
            estimate = max([estimate, *timed])
        return estimate

    def seconds_left(self, index: int) -> float | None:
        """Estimated seconds for runs ``index`` and later (None until a run was timed)."""
        total = 0.0
        for run in self.runs[index:]:
            rate = self.rate(run.name)
            if rate is None:
                return None
            total += rate * run.iterations
        return total

    def begin(self, index: int) -> None:
        from ladet.engine.progress import format_seconds, set_progress_prefix

        run = self.runs[index]
        label = f"run {index + 1}/{len(self.runs)}: {run.name}"
        set_progress_prefix(label)
        left = self.seconds_left(index)
        eta = f", ETA of the whole command ≈ {format_seconds(left)}" if left is not None else ""
        print(
            f"[reproduce] {label} ({run.iterations} iterations) -> {run.work_dir}; "
            f"{format_seconds(time.perf_counter() - self.started)} elapsed{eta}",
            flush=True,
        )

    def end(self, index: int, seconds: float) -> None:
        from ladet.engine.progress import set_progress_prefix

        run = self.runs[index]
        if seconds > 0 and run.iterations > 0:
            self.seconds_per_iteration[run.name] = seconds / run.iterations
        set_progress_prefix("")

    def run(self, index: int, force: bool, device: str | None) -> dict[str, Any]:
        """Trains (or reuses) run ``index`` with the progress lines around it."""
        run = self.runs[index]
        self.begin(index)
        key = {"config": str(run.config_path), "overrides": run.overrides}
        finished = None if force else reusable_metrics(run.work_dir, key)
        started = time.perf_counter()
        try:
            metrics = train_or_reuse(run.config_path, run.work_dir, run.overrides, force, device)
        finally:
            self.end(index, finished[1] if finished is not None else time.perf_counter() - started)
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
    from ladet.vis.detections import DEFAULT_MAX_DRAWN, DEFAULT_SCORE_THRESHOLD, draw_detections, model_name
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
                opened.convert("RGB"),
                detections,
                class_names,
                score_threshold=DEFAULT_SCORE_THRESHOLD,
                min_display_side=512,
                max_drawn=DEFAULT_MAX_DRAWN,
                caption=True,
                model=model_name(config_path, checkpoint),
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
    parser.add_argument(
        "--out",
        default="runs/demo",
        help="output folder; each budget writes into OUT/BUDGET (runs, table, pictures)",
    )
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
    parser.add_argument(
        "--force",
        action="store_true",
        help="retrain runs that finished earlier (interrupted runs resume without it)",
    )
    parser.add_argument(
        "--pictures", type=int, default=3, help="detection pictures of the best student (0: none)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the whole reproduction; returns the process exit code."""
    arguments = parse_arguments(argv)
    started = time.perf_counter()
    budget = BUDGETS[arguments.budget]
    out_dir = Path(arguments.out) / budget.name  # one folder per budget: budgets never mix
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in [TEACHER_CONFIG, *(STUDENT_CONFIGS[name] for name in arguments.methods)]:
        if not path.is_file():
            raise SystemExit(f"config {path} not found: run from the repository root")
    print(f"[reproduce] budget {budget.name} in {out_dir} (disk: {DISK_NOTE})", flush=True)
    paths = ensure_dataset(budget, out_dir)

    teacher_dir = out_dir / "teacher"
    teacher_checkpoint = final_checkpoint(teacher_dir)
    plan = [
        PlannedRun(
            "teacher",
            TEACHER_CONFIG,
            teacher_dir,
            teacher_overrides := run_overrides(budget, paths, arguments.seeds[0], None, is_teacher=True),
            planned_iterations(TEACHER_CONFIG, teacher_overrides, budget.num_train),
        )
    ]
    for method in arguments.methods:
        for seed in arguments.seeds:
            checkpoint = teacher_checkpoint if method != "baseline" else None
            overrides = run_overrides(budget, paths, seed, checkpoint, is_teacher=False)
            plan.append(
                PlannedRun(
                    method,
                    STUDENT_CONFIGS[method],
                    out_dir / f"{method}_seed{seed}",
                    overrides,
                    planned_iterations(STUDENT_CONFIGS[method], overrides, budget.num_train),
                )
            )
    progress = OverallProgress(plan)
    teacher_metrics = progress.run(0, arguments.force, arguments.device)

    results: dict[str, list[dict[str, Any]]] = {}
    run_dirs: dict[str, list[Path]] = {}
    student_overrides: dict[str, list[str]] = {}
    for index, run in enumerate(plan[1:], start=1):
        metrics = progress.run(index, arguments.force, arguments.device)
        results.setdefault(run.name, []).append(metrics)
        run_dirs.setdefault(run.name, []).append(run.work_dir)
        student_overrides.setdefault(run.name, run.overrides)

    table_results = {"teacher": [teacher_metrics], **results}
    teachers = {method: ("" if method == "baseline" else TEACHER_DESCRIPTION) for method in results}
    rows = build_rows(table_results, teachers)
    for row in rows:  # the teacher row is a reference, not compared with the baseline
        if row.method == "teacher":
            row.delta_ap = None
    markdown = format_markdown_table(rows)
    heading = (
        f"Miniature Table 2 on the built-in dataset (budget {budget.name}, seeds {arguments.seeds}, "
        f"COCO AP in %, mean ± sample std over seeds; ΔAP vs the baseline, seed by seed)."
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
    wall_seconds = time.perf_counter() - started  # the whole command, pictures included
    (out_dir / "table2.md").write_text(
        f"{heading}\n\n{markdown}\n\nWall time of the whole command: {wall_seconds:.0f} s\n", encoding="utf-8"
    )
    document = {
        "budget": budget.name,
        "seeds": arguments.seeds,
        "wall_seconds": wall_seconds,
        "metric_units": "fraction (metrics); the table rows are in percent",
        "teacher": {
            "config": str(TEACHER_CONFIG),
            "checkpoint": str(teacher_checkpoint),
            "metrics": metrics_to_json(teacher_metrics),
        },
        "runs": {
            method: [
                {"seed": seed, "work_dir": str(path), "metrics": metrics_to_json(metrics)}
                for seed, path, metrics in zip(
                    arguments.seeds, run_dirs[method], results[method], strict=True
                )
            ]
            for method in results
        },
        "table": rows_to_json(rows),
        "pictures": pictures,
    }
    (out_dir / "table2.json").write_text(dumps_strict(document), encoding="utf-8")
    print(
        f"[reproduce] wrote {out_dir / 'table2.md'}, {out_dir / 'table2.json'} and "
        f"{len(pictures)} picture(s) in {out_dir / 'pictures'} ({wall_seconds:.0f} s in total)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
