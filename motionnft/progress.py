"""Progress of long work: a Rich bar on a terminal, one plain line per step in logs and CI.

    with StepProgress("epoch", total=60) as progress:
        for epoch in range(60):
            progress.stage("sample")  # what the current step is doing (shown on the bar)
            ...
            progress.advance({"reward": 0.81, "mas": 47.1})

When ``stream.isatty()`` (the stream defaults to ``sys.stderr`` at construction) this draws a Rich
progress bar. Otherwise, or when the environment sets ``MOTIONNFT_PROGRESS=plain``, each
``advance`` writes exactly one line to the stream, or to ``logger`` at INFO when one is given::

    epoch 3/60  stage=update  eta 4m12s  reward=0.81 mas=47.1

Plain lines never depend on the terminal width (no wrapping, boxes or colour): a log reads the same
at any COLUMNS and with no terminal. On a terminal the bar replaces the lines (``logger`` is unused).
ETA = mean duration of the last ``window`` steps x steps left; steps of very different lengths take
``weights`` (their expected relative durations), and then ETA = recent seconds per unit of weight x
the weight left. A StepProgress opened inside another on the same stream shares its Rich console, so
it shows as a second bar instead of a LiveError.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from rich import progress as rp
from rich.console import Console
from rich.table import Column
from rich.text import Text

ENV_VAR = "MOTIONNFT_PROGRESS"
Metric = float | int | str

# Rich nests live displays only when they share one Console, so there is one per stream.
_consoles: weakref.WeakKeyDictionary[TextIO, Console] = weakref.WeakKeyDictionary()


def format_duration(seconds: float) -> str:
    """``seconds`` (wall seconds) as ``42s``, ``4m12s`` or ``1h05m``, rounded to whole seconds."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_metrics(metrics: Mapping[str, Metric]) -> str:
    """``key=value`` pairs in the given order; floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def is_plain(stream: TextIO) -> bool:
    """True unless ``stream`` is a terminal and ``MOTIONNFT_PROGRESS`` is not ``plain``."""
    if os.environ.get(ENV_VAR, "").strip().lower() == "plain":
        return True
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream: not a terminal
        return True


def _console(stream: TextIO) -> Console:
    try:
        return _consoles.setdefault(stream, Console(file=stream))
    except TypeError:  # a stream that cannot be weakly referenced: an unshared console
        return Console(file=stream)


class _Metrics(rp.ProgressColumn):
    """The metrics text on one line: cut short with an ellipsis on a narrow terminal, never wrapped."""

    def render(self, task: rp.Task) -> Text:
        return Text(task.fields["metrics"], no_wrap=True, overflow="ellipsis")


def _columns() -> tuple[rp.ProgressColumn, ...]:
    """name, bar, n/total, elapsed, eta, stage, metrics; all but the metrics keep their width."""
    keep = Column(no_wrap=True)  # Rich copies it for each progress column
    name, eta, stage = (
        rp.TextColumn(text, table_column=keep)
        for text in ("{task.description}", "{task.fields[eta]}", "{task.fields[stage]}")
    )
    return (name, rp.BarColumn(20, table_column=keep), rp.MofNCompleteColumn(table_column=keep),
            rp.TimeElapsedColumn(table_column=keep), eta, stage, _Metrics())  # fmt: skip


class StepProgress:
    """Progress over ``total`` steps named ``label``; a context manager (module docstring)."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        completed: int = 0,
        stream: TextIO | None = None,
        logger: logging.Logger | None = None,
        window: int = 10,
        weights: Sequence[float] | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``completed``: steps already done (a resumed run); ``enabled=False`` shows nothing;
        ``window``: steps in the ETA's moving average; ``weights``: one expected relative duration per
        step (default: all equal); ``clock``: monotonic seconds (tests pass a fake)."""
        if weights is not None and (len(weights) != total or any(w <= 0 for w in weights)):
            raise ValueError(f"weights must be {total} positive numbers, one per step, got {list(weights)}")
        stream = stream if stream is not None else sys.stderr
        # Inside a Rich live display sys.stderr is Rich's proxy: use (and share) the real stream.
        self.stream: TextIO = getattr(stream, "rich_proxied_file", stream)
        self.label, self.total, self.completed, self.logger = label, total, completed, logger
        self.enabled, self.plain = enabled, is_plain(self.stream)
        self._clock = clock
        self._weights = list(weights) if weights is not None else [1.0] * total
        self._durations: deque[tuple[float, float]] = deque(maxlen=window)  # (seconds, step weight)
        self._last = clock()
        self._stage: str | None = None
        self._bar: tuple[rp.Progress, rp.TaskID] | None = None

    def __enter__(self) -> StepProgress:
        self._last = self._clock()
        if self.enabled and not self.plain:
            bar = rp.Progress(*_columns(), console=_console(self.stream))
            task = bar.add_task(
                self.label, total=self.total, completed=self.completed, eta="eta ?", stage="", metrics=""
            )
            bar.start()
            self._bar = (bar, task)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar[0].stop()
            self._bar = None

    @property
    def eta_s(self) -> float | None:
        """Seconds left: recent seconds per unit of step weight times the weight left (None before a step)."""
        if not self._durations:
            return None
        seconds = sum(duration for duration, _ in self._durations)
        weight = sum(step_weight for _, step_weight in self._durations)
        return seconds / weight * sum(self._weights[self.completed :])

    def stage(self, name: str) -> None:
        """Name what the current step is doing now (shown on the bar and on the step's line)."""
        self._stage = name
        if self._bar is not None:
            self._bar[0].update(self._bar[1], stage=name)

    def advance(self, metrics: Mapping[str, Metric] | None = None) -> None:
        """One step done: update the bar, or write one plain line (module docstring)."""
        now = self._clock()
        weight = self._weights[self.completed] if self.completed < self.total else 1.0
        self._durations.append((now - self._last, weight))
        self._last, self.completed = now, self.completed + 1
        eta, shown = format_duration(self.eta_s or 0.0), format_metrics(metrics or {})
        if self._bar is not None:
            self._bar[0].update(self._bar[1], completed=self.completed, eta=f"eta {eta}", metrics=shown)
        elif self.enabled and self.plain:
            stage = f"  stage={self._stage}" if self._stage else ""
            line = f"{self.label} {self.completed}/{self.total}{stage}  eta {eta}" + (f"  {shown}" if shown else "")
            if self.logger is not None:
                self.logger.info("%s", line)
            else:
                self.stream.write(line + "\n")
                self.stream.flush()  # a log follower sees each step as it ends
