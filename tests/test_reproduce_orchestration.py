"""The reproduction's orchestration with the engine's train() replaced by a recorder.

The real end-to-end run (``python -m ladet.reproduce --budget smoke``) belongs to the
integration suite; here we check what is trained, with which settings, and what is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import ladet.engine.trainer
from ladet.config.schema import Config
from ladet.reproduce import main

REPOSITORY = Path(__file__).resolve().parents[1]
FAKE_AP = {"teacher": 0.50, "baseline": 0.30, "lad": 0.34, "solad": 0.36}


def _fake_train(calls: list[tuple[Config, Path]]) -> Any:
    def train(config: Config, work_dir: str | Path, resume: Any = None, **kwargs: Any) -> dict[str, Any]:
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / "latest.pth").write_bytes(b"fake")
        calls.append((config, work_dir))
        name = "teacher" if work_dir.name == "teacher" else config.method.name
        ap = FAKE_AP[name] + 0.01 * config.seed
        return {
            "AP": ap,
            "AP50": ap + 0.2,
            "AP75": ap,
            "APs": 0.1,
            "APm": 0.2,
            "APl": -1.0,
            "per_class_AP": {},
        }

    return train


def test_trains_teacher_once_then_every_student_per_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Config, Path]] = []
    monkeypatch.setattr(ladet.engine.trainer, "train", _fake_train(calls))
    monkeypatch.chdir(REPOSITORY)
    demo = tmp_path / "demo"
    out = demo / "smoke"  # one folder per budget
    assert main(["--out", str(demo), "--budget", "smoke", "--seeds", "0", "1", "--pictures", "0"]) == 0

    names = [work_dir.name for _, work_dir in calls]
    assert names == [
        "teacher",
        "baseline_seed0",
        "baseline_seed1",
        "lad_seed0",
        "lad_seed1",
        "solad_seed0",
        "solad_seed1",
    ]
    teacher_config = calls[0][0]
    # the dataset was generated inside --out for the smoke budget and every run points at it
    assert (out / "data" / "annotations" / "val.json").is_file()
    assert all(
        config.data.train.ann_file == str(out / "data" / "annotations" / "train.json") for config, _ in calls
    )
    for config, work_dir in calls[1:]:
        assert config.seed == int(work_dir.name[-1])
        assert (config.train.epochs, config.train.max_iters_per_epoch) == (1, 2)
        if config.method.name != "baseline":
            assert config.method.teacher is not None
            assert config.method.teacher.checkpoint == str(out / "teacher" / "latest.pth")
    assert teacher_config.model.backbone.depth == 34

    table = (out / "table2.md").read_text(encoding="utf-8")
    assert "| LAD | PAA-R34 (demo) | 34.5 ± 0.7 |" in table  # 34 and 35 over seeds 0 and 1
    assert table.splitlines()[6].endswith("| +4.0 ± 0.0 |")  # LAD - baseline = 4 points on both seeds
    document = json.loads((out / "table2.json").read_text(encoding="utf-8"))
    assert document["budget"] == "smoke" and document["seeds"] == [0, 1]
    assert [row["method"] for row in document["table"]] == ["teacher", "baseline", "lad", "solad"]
    assert document["runs"]["solad"][1]["metrics"]["AP"] == pytest.approx(0.37)

    # a second call reuses the finished runs; --force retrains them
    calls.clear()
    assert main(["--out", str(demo), "--budget", "smoke", "--seeds", "0", "1", "--pictures", "0"]) == 0
    assert calls == []
    assert (
        main(
            [
                "--out",
                str(demo),
                "--budget",
                "smoke",
                "--seeds",
                "0",
                "--methods",
                "baseline",
                "--pictures",
                "0",
                "--force",
            ]
        )
        == 0
    )
    assert [work_dir.name for _, work_dir in calls] == ["teacher", "baseline_seed0"]


def test_engine_without_final_evaluation_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ladet.engine.trainer, "train", lambda config, work_dir, **kwargs: {})
    monkeypatch.chdir(REPOSITORY)
    with pytest.raises(RuntimeError, match="no final evaluation"):
        main(
            ["--out", str(tmp_path / "demo"), "--budget", "smoke", "--methods", "baseline", "--pictures", "0"]
        )


def test_interrupted_run_resumes_and_changed_settings_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[Config, Path]] = []
    resumes: list[Any] = []
    fake = _fake_train(calls)

    def interrupted_baseline(config: Config, work_dir: str | Path, resume: Any = None, **kwargs: Any) -> Any:
        resumes.append(resume)
        if Path(work_dir).name == "baseline_seed0" and len(resumes) == 2:  # killed mid-run
            Path(work_dir, "latest.pth").write_bytes(b"partial")
            raise KeyboardInterrupt
        return fake(config, work_dir, resume)

    monkeypatch.setattr(ladet.engine.trainer, "train", interrupted_baseline)
    monkeypatch.chdir(REPOSITORY)
    demo = tmp_path / "demo"
    arguments = ["--out", str(demo), "--budget", "smoke", "--methods", "baseline", "--pictures", "0"]
    with pytest.raises(KeyboardInterrupt):
        main(arguments)
    assert main(arguments) == 0
    # teacher fresh, baseline killed, then: teacher reused, baseline resumed from its latest.pth
    assert resumes == [None, None, "auto"]
    out = capsys.readouterr().out
    assert "[reproduce] run 2/2: baseline (2 iterations)" in out and "ETA of the whole command" in out
    assert "resuming the interrupted run" in out
    # finished runs are reused; changed settings clear the run's folder and restart it
    assert main(arguments) == 0 and len(resumes) == 3
    (demo / "smoke" / "baseline_seed0" / "stale.txt").write_text("old")
    started = demo / "smoke" / "baseline_seed0" / "reproduce_started.json"
    started.write_text(json.dumps({"key": {"config": "other.yaml", "overrides": []}}))
    (demo / "smoke" / "baseline_seed0" / "reproduce_result.json").unlink()
    resumes.clear()
    assert main(arguments) == 0
    assert resumes == [None]  # the teacher is reused; the baseline starts over
    assert not (demo / "smoke" / "baseline_seed0" / "stale.txt").exists()
    assert "clearing" in capsys.readouterr().out


def test_table_files_are_strict_and_timed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Config, Path]] = []
    fake = _fake_train(calls)

    def with_nan(config: Config, work_dir: str | Path, resume: Any = None, **kwargs: Any) -> Any:
        metrics = fake(config, work_dir, resume)
        metrics["per_class_AP"] = {"ring": float("nan")}
        return metrics

    monkeypatch.setattr(ladet.engine.trainer, "train", with_nan)
    monkeypatch.chdir(REPOSITORY)
    demo = tmp_path / "demo"
    assert main(["--out", str(demo), "--budget", "smoke", "--methods", "baseline", "--pictures", "0"]) == 0
    text = (demo / "smoke" / "table2.json").read_text(encoding="utf-8")
    assert "NaN" not in text
    document = json.loads(text)
    assert document["teacher"]["metrics"]["per_class_AP"] == {"ring": None}
    assert document["teacher"]["metrics"]["null_reasons"]["per_class_AP.ring"].startswith("no ground truth")
    assert "Wall time of the whole command:" in (demo / "smoke" / "table2.md").read_text(encoding="utf-8")
