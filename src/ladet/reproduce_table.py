"""The miniature Table 2: aggregate per-seed COCO metrics and format them as Markdown / JSON.

Metrics come from ``CocoEvaluator.summarize()`` as fractions (0.404) with COCO's -1 for "no
ground truth in that size range"; the table shows percentages with one decimal, "n/a" for -1,
and "mean ± sample standard deviation" when several seeds ran.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

TABLE_METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")

# Display names of the methods, in the paper's Table 2 wording.
METHOD_TITLES: dict[str, str] = {
    "baseline": "Baseline (PAA self-assignment)",
    "kd": "Soft-Label-KL",
    "lad": "LAD",
    "solad": "SoLAD",
    "colad": "CoLAD",
    "teacher": "Teacher",
}


@dataclass
class MetricSummary:
    """One metric over seeds, in percent. ``spread`` is the sample standard deviation (0 for one seed)."""

    mean: float | None  # None when every seed reported -1 (no GT in that size range)
    spread: float
    count: int


@dataclass
class TableRow:
    method: str
    title: str
    teacher: str
    metrics: dict[str, MetricSummary]
    delta_ap: MetricSummary | None  # AP difference to the baseline (percentage points)


def summarize_metric(values: Sequence[float]) -> MetricSummary:
    """Mean and sample standard deviation (ddof 1) of fractions, in percent; -1 entries are skipped.

    Example: [0.40, 0.42] gives mean 41.0 and spread 1.41 (percent), count 2.
    """
    usable = [100.0 * float(value) for value in values if float(value) >= 0 and math.isfinite(float(value))]
    if not usable:
        return MetricSummary(None, 0.0, 0)
    mean = sum(usable) / len(usable)
    spread = 0.0
    if len(usable) > 1:
        spread = math.sqrt(sum((value - mean) ** 2 for value in usable) / (len(usable) - 1))
    return MetricSummary(mean, spread, len(usable))


def build_rows(
    results: Mapping[str, Sequence[Mapping[str, float]]],
    teachers: Mapping[str, str],
    baseline: str = "baseline",
) -> list[TableRow]:
    """One row per method (in the order of ``results``), with ΔAP against ``baseline``.

    Args:
        results: method name -> list of metric dicts, one per seed (the same seeds for every
            method, so that ΔAP is taken seed by seed).
        teachers: method name -> teacher description ("" or "—" for none).
        baseline: the method the Δ column is measured against (no Δ if it is absent).

    Raises:
        ValueError: a metric dict lacks one of :data:`TABLE_METRICS`.
    """
    for method, runs in results.items():
        for seed_position, metrics in enumerate(runs):
            missing = [name for name in TABLE_METRICS if name not in metrics]
            if missing:
                raise ValueError(f"metrics of method '{method}' run #{seed_position} lack {missing}")
    baseline_runs = results.get(baseline)
    rows: list[TableRow] = []
    for method, runs in results.items():
        summaries = {name: summarize_metric([metrics[name] for metrics in runs]) for name in TABLE_METRICS}
        delta = None
        if baseline_runs and method != baseline:
            pairs = list(zip(runs, baseline_runs, strict=False))  # seed by seed
            differences = [float(mine["AP"]) - float(theirs["AP"]) for mine, theirs in pairs]
            delta = signed_difference_summary(differences) if differences else None
        rows.append(
            TableRow(
                method, METHOD_TITLES.get(method, method), teachers.get(method, "") or "—", summaries, delta
            )
        )
    return rows


def signed_difference_summary(differences: Sequence[float]) -> MetricSummary:
    """Mean and sample standard deviation of AP differences (fractions), in percentage points."""
    values = [100.0 * float(value) for value in differences]
    mean = sum(values) / len(values)
    spread = (
        math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))
        if len(values) > 1
        else 0.0
    )
    return MetricSummary(mean, spread, len(values))


def format_summary(summary: MetricSummary | None, signed: bool = False) -> str:
    """Formats a summary as "41.0", "41.0 ± 1.4", "+0.6 ± 0.2" (signed), or "n/a"."""
    if summary is None or summary.mean is None:
        return "n/a"
    text = f"{summary.mean:+.1f}" if signed else f"{summary.mean:.1f}"
    if summary.count > 1:
        text += f" ± {summary.spread:.1f}"
    return text


def format_markdown_table(rows: Sequence[TableRow]) -> str:
    """The Markdown table: Method | Teacher | AP | AP50 | AP75 | APs | APm | APl | ΔAP."""
    header = ["Method", "Teacher", *TABLE_METRICS, "ΔAP"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    for row in rows:
        cells = [row.title, row.teacher]
        cells += [format_summary(row.metrics[name]) for name in TABLE_METRICS]
        cells.append(format_summary(row.delta_ap, signed=True) if row.delta_ap is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_to_json(rows: Sequence[TableRow]) -> list[dict[str, object]]:
    """Plain dicts (JSON-ready) of the rows."""
    return [asdict(row) for row in rows]
