"""The reproduction's table: aggregation over seeds (mean ± sample std), ΔAP, Markdown, overrides."""

from __future__ import annotations

import math

import pytest

from ladet.reproduce import BUDGETS, STUDENT_CONFIGS, TEACHER_CONFIG, run_overrides
from ladet.reproduce_table import (
    MetricSummary,
    build_rows,
    format_markdown_table,
    format_summary,
    summarize_metric,
)


def _metrics(
    ap: float,
    ap50: float = 0.5,
    ap75: float = 0.3,
    small: float = 0.1,
    medium: float = 0.2,
    large: float = -1.0,
) -> dict[str, float]:
    return {"AP": ap, "AP50": ap50, "AP75": ap75, "APs": small, "APm": medium, "APl": large, "AR100": 0.9}


def test_summarize_metric_mean_and_sample_std_in_percent() -> None:
    summary = summarize_metric([0.40, 0.42])
    assert summary.mean == pytest.approx(41.0)
    assert summary.spread == pytest.approx(math.sqrt(2.0))  # sample std (ddof 1) of 40 and 42
    assert summary.count == 2
    three = summarize_metric([0.30, 0.33, 0.36])
    assert (three.mean, three.spread) == (pytest.approx(33.0), pytest.approx(3.0))
    # COCO's -1 ("no GT in this size range") is left out, all -1 gives n/a
    assert summarize_metric([0.5, -1.0]) == MetricSummary(pytest.approx(50.0), 0.0, 1)
    assert summarize_metric([-1.0, -1.0]).mean is None
    assert format_summary(summarize_metric([-1.0])) == "n/a"
    assert format_summary(MetricSummary(41.04, 1.41, 2)) == "41.0 ± 1.4"
    assert format_summary(MetricSummary(-0.55, 0.0, 1), signed=True) == "-0.6"


def test_rows_delta_is_taken_seed_by_seed_against_the_baseline() -> None:
    results = {
        "baseline": [_metrics(0.30), _metrics(0.32)],
        "lad": [_metrics(0.33), _metrics(0.36)],
        "solad": [_metrics(0.29), _metrics(0.30)],
    }
    rows = build_rows(results, {"lad": "PAA-R34", "solad": "PAA-R34"})
    by_method = {row.method: row for row in rows}
    assert [row.method for row in rows] == ["baseline", "lad", "solad"]
    assert by_method["baseline"].delta_ap is None and by_method["baseline"].teacher == "—"
    lad_delta = by_method["lad"].delta_ap
    assert lad_delta is not None
    assert lad_delta.mean == pytest.approx(3.5)  # differences 3 and 4 points
    assert lad_delta.spread == pytest.approx(math.sqrt(0.5))
    solad_delta = by_method["solad"].delta_ap
    assert solad_delta is not None and solad_delta.mean == pytest.approx(-1.5)  # -1 and -2: negative is kept
    assert by_method["lad"].metrics["AP"].mean == pytest.approx(34.5)
    assert by_method["lad"].metrics["APl"].mean is None


def test_markdown_table_for_one_seed() -> None:
    rows = build_rows(
        {"baseline": [_metrics(0.301)], "lad": [_metrics(0.325, large=0.4)]}, {"lad": "PAA-R34 (demo)"}
    )
    assert format_markdown_table(rows).splitlines() == [
        "| Method | Teacher | AP | AP50 | AP75 | APs | APm | APl | ΔAP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        "| Baseline (PAA self-assignment) | — | 30.1 | 50.0 | 30.0 | 10.0 | 20.0 | n/a | — |",
        "| LAD | PAA-R34 (demo) | 32.5 | 50.0 | 30.0 | 10.0 | 20.0 | 40.0 | +2.4 |",
    ]


def test_missing_metric_names_the_method_and_run() -> None:
    broken = _metrics(0.3)
    del broken["APm"]
    with pytest.raises(ValueError, match=r"'lad' run #1 lack \['APm'\]"):
        build_rows({"baseline": [_metrics(0.3)], "lad": [_metrics(0.3), broken]}, {})


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_budget_overrides_are_valid_for_every_demo_config(budget: str, tmp_path) -> None:
    """Every override the reproduction passes is accepted by the strict config loader."""
    from ladet.config.loader import load_config

    paths = {
        "train_ann_file": tmp_path / "annotations" / "train.json",
        "train_image_dir": tmp_path / "train",
        "val_ann_file": tmp_path / "annotations" / "val.json",
        "val_image_dir": tmp_path / "val",
    }
    teacher = load_config(TEACHER_CONFIG, run_overrides(BUDGETS[budget], paths, 3, None, is_teacher=True))
    assert teacher.seed == 3 and teacher.data.val.ann_file == str(paths["val_ann_file"])
    checkpoint = tmp_path / "teacher" / "latest.pth"
    for method, config_path in STUDENT_CONFIGS.items():
        overrides = run_overrides(
            BUDGETS[budget], paths, 1, None if method == "baseline" else checkpoint, is_teacher=False
        )
        config = load_config(config_path, overrides)
        assert config.method.name == method
        assert config.seed == 1
        if method != "baseline":
            assert config.method.teacher is not None
            assert config.method.teacher.checkpoint == str(checkpoint)
            assert config.method.evaluate_teacher is False
        # identical budgets for every student
        student_settings = (config.train.epochs, config.train.max_iters_per_epoch, config.data.short_size)
        if method == "baseline":
            baseline_settings = student_settings
        assert student_settings == baseline_settings
