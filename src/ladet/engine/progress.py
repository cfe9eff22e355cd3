"""Progress display for long steps: a tqdm bar on a terminal, periodic plain lines elsewhere.

A terminal (``stderr`` is a TTY) gets tqdm's live bar. Output redirected to a file or a CI log
gets one plain line every ``LADET_PROGRESS_INTERVAL`` seconds (default 30) and a last line when
the step ends, never carriage-return frames::

    epoch 2/6: 40/101 (40%), 32 s elapsed, ETA 49 s, loss=1.2345

:func:`progress_bar` takes tqdm's keyword arguments (``total``, ``initial``, ``desc``,
``disable``, ``unit``, ...) so that it is a drop-in replacement of ``tqdm(...)``.

A caller that runs several long steps in a row (the demo) sets a common prefix with
:func:`set_progress_prefix` ("run 2/4: baseline"), shown before every bar's description.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

INTERVAL_VARIABLE = "LADET_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_SECONDS = 30.0

_prefix = ""


def set_progress_prefix(prefix: str) -> None:
    """Text put before every progress description ("" for none), e.g. ``"run 2/4: baseline"``."""
    global _prefix
    _prefix = prefix


def progress_prefix() -> str:
    return _prefix


def _with_prefix(description: str) -> str:
    if _prefix and description:
        return f"{_prefix}, {description}"
    return _prefix or description


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def is_interactive(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default ``sys.stderr``) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class PlainProgress:
    """tqdm's interface (``update``, ``set_postfix``, ``close``) printing plain lines.

    A line is printed when at least ``interval`` seconds passed since the last one, and once at
    :meth:`close` (when anything was done).
    """

    def __init__(
        self,
        iterable: Any = None,
        total: int | None = None,
        initial: int = 0,
        desc: str = "",
        disable: bool = False,
        unit: str = "it",
        interval: float | None = None,
        file: TextIO | None = None,
        **_ignored: Any,
    ) -> None:
        self.iterable = iterable
        self.total = total
        self.n = initial
        self.initial = initial
        self.desc = desc
        self.disable = disable
        self.unit = unit
        self.interval = _interval_seconds() if interval is None else interval
        self.file = file
        self.postfix = ""
        self.started = self.last_line = time.perf_counter()
        self.printed_n: int | None = None  # the count of the last printed line
        self.closed = False

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        merged = {**(values or {}), **kwargs}
        self.postfix = ", ".join(f"{key}={value}" for key, value in merged.items())

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def update(self, count: int = 1) -> None:
        self.n += count
        now = time.perf_counter()
        if not self.disable and now - self.last_line >= self.interval:
            self._print_line(now)

    def line(self, now: float | None = None) -> str:
        """The current state as one line."""
        now = time.perf_counter() if now is None else now
        elapsed = now - self.started
        done = self.n - self.initial
        parts = [f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"]
        if self.unit != "it":
            parts[0] += f" {self.unit}"
        if self.total:
            parts[0] += f" ({100.0 * self.n / self.total:.0f}%)"
        parts.append(f"{format_seconds(elapsed)} elapsed")
        if self.total is not None and done > 0 and self.n < self.total:
            parts.append(f"ETA {format_seconds(elapsed / done * (self.total - self.n))}")
        text = f"{self.desc}: " if self.desc else ""
        text += ", ".join(parts)
        return text + (f", {self.postfix}" if self.postfix else "")

    def _print_line(self, now: float) -> None:
        print(self.line(now), file=self.file if self.file is not None else sys.stderr, flush=True)
        self.last_line = now
        self.printed_n = self.n

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.disable and self.n > self.initial and self.printed_n != self.n:
            self._print_line(time.perf_counter())

    def __iter__(self) -> Any:
        """Yields the items of ``iterable``, counting each; the closing line comes at the end."""
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _interval_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_VARIABLE, DEFAULT_INTERVAL_SECONDS)))
    except ValueError:
        return DEFAULT_INTERVAL_SECONDS


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """A tqdm bar on a terminal, else a :class:`PlainProgress`; same arguments as tqdm
    (``progress_bar(iterable, total=..., desc=...)`` wraps an iterable as tqdm does).

    The description gets the prefix of :func:`set_progress_prefix`.
    """
    kwargs["desc"] = _with_prefix(str(kwargs.get("desc") or ""))
    if is_interactive(kwargs.get("file")):
        return tqdm(*args, **kwargs)
    return PlainProgress(*args, **kwargs)
