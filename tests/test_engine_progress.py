"""Progress display: plain periodic lines when output is not a terminal, tqdm on a terminal,
evaluation progress (images done, ETA) and the run prefix of the demo."""

from __future__ import annotations

import io

import pytest
import torch
from engine_fakes import FakeEvaluator, TinyDetector, make_batch
from tqdm import tqdm

from ladet.engine.evaluate import evaluate, images_in
from ladet.engine.progress import (
    PlainProgress,
    format_seconds,
    progress_bar,
    set_progress_prefix,
)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_without_carriage_returns() -> None:
    stream = io.StringIO()
    progress = PlainProgress(total=4, desc="evaluating", unit="img", interval=0.0, file=stream)
    for _ in range(3):
        progress.update(1)
    progress.set_postfix({"loss": "1.0000"})
    progress.update(1)
    progress.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 4  # one per update; the closing line is not repeated
    assert lines[0].startswith("evaluating: 1/4 img (25%)")
    assert "ETA" in lines[2] and "3/4 img (75%)" in lines[2]
    assert lines[-1].startswith("evaluating: 4/4 img (100%)") and "ETA" not in lines[-1]
    assert lines[-1].endswith("loss=1.0000")


def test_plain_lines_are_periodic() -> None:
    stream = io.StringIO()
    progress = PlainProgress(total=1000, desc="epoch 1/2", interval=3600.0, file=stream)
    for _ in range(1000):
        progress.update(1)
    progress.close()
    (line,) = stream.getvalue().splitlines()  # only the closing line within the interval
    assert line.startswith("epoch 1/2: 1000/1000 (100%)")


def test_progress_bar_picks_tqdm_on_a_terminal_only() -> None:
    assert isinstance(progress_bar(total=3, desc="x", file=io.StringIO()), PlainProgress)
    bar = progress_bar(total=3, desc="x", file=_Terminal())
    assert isinstance(bar, tqdm)
    bar.close()


def test_prefix_is_shown_before_every_description() -> None:
    try:
        set_progress_prefix("run 2/4: baseline")
        bar = progress_bar(total=6, desc="epoch 3/6", file=io.StringIO(), interval=0.0)
        assert bar.desc == "run 2/4: baseline, epoch 3/6"
    finally:
        set_progress_prefix("")
    assert progress_bar(total=1, desc="epoch 1/1", file=io.StringIO()).desc == "epoch 1/1"


@pytest.mark.parametrize(("seconds", "text"), [(4.2, "4 s"), (185, "3 min 05 s"), (3725, "1 h 02 min")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_evaluation_reports_images_done(monkeypatch, capsys) -> None:
    monkeypatch.setenv("LADET_PROGRESS_INTERVAL", "0")
    loader = torch.utils.data.DataLoader(
        list(range(5)),
        batch_size=2,
        collate_fn=lambda indices: _batch(indices),
    )
    assert images_in(loader) == 5
    evaluate(TinyDetector(), loader, FakeEvaluator(), print_table=False, title="epoch 1")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("evaluating epoch 1: 2/5 img (40%)") and "ETA" in lines[0]
    assert lines[-1].startswith("evaluating epoch 1: 5/5 img (100%)")


def _batch(indices: list[int]):
    batch = make_batch(0, 0, indices[0], len(indices))
    batch.image_ids = [100 + index for index in indices]
    return batch


def test_wrapping_an_iterable_in_plain_mode() -> None:
    stream = io.StringIO()
    items = list(progress_bar(iter("abc"), total=3, desc="checking images", unit="img", file=stream))
    assert items == ["a", "b", "c"]
    assert stream.getvalue().splitlines()[-1].startswith("checking images: 3/3 img (100%)")
    assert "\r" not in stream.getvalue()
