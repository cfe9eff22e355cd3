"""The README's main job, end to end on the real engine at the `smoke` budget (tiny data, 2 iterations
per run): teacher, then baseline / LAD / SoLAD students, the table and the pictures are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ladet.reproduce import main


@pytest.mark.slow
def test_smoke_budget_trains_teacher_and_students_and_writes_the_table(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    assert main(["--out", str(tmp_path / "demo"), "--budget", "smoke"]) == 0
    out = tmp_path / "demo" / "smoke"  # one folder per budget
    table = json.loads((out / "table2.json").read_text())
    text = (out / "table2.md").read_text()
    for name in ("Baseline", "LAD", "SoLAD", "Teacher"):
        assert name in text
    assert (out / "teacher" / "latest.pth").is_file()
    for method in ("baseline", "lad", "solad"):
        assert (out / f"{method}_seed0" / "latest.pth").is_file()
    assert table
    assert any(path.suffix == ".png" for path in (out / "pictures").iterdir())
