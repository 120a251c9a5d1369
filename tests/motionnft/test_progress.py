"""StepProgress: one plain line per step off a terminal, a Rich bar on one, and the env override."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from motionnft.progress import ENV_VAR, StepProgress, format_duration, format_metrics, is_plain


class FakeTerminal(io.StringIO):
    """A captured stream that says it is a terminal, so Rich draws (ANSI codes included)."""

    def isatty(self) -> bool:
        return True


class FakeClock:
    """Monotonic seconds that move only when told to: ETAs become exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_durations_and_metrics_format() -> None:
    assert [format_duration(s) for s in (0, 41.6, 252, 3600 + 5 * 60 + 59)] == ["0s", "42s", "4m12s", "1h05m"]
    assert format_metrics({"reward": 0.8123456, "mas": 47.1, "dropped": 0, "mode": "b"}) == (
        "reward=0.8123 mas=47.1 dropped=0 mode=b"
    )


def test_plain_mode_writes_one_line_per_step_with_count_eta_and_metrics() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with StepProgress("epoch", total=4, stream=stream, clock=clock, window=2) as progress:
        for seconds, stage in ((10.0, "sample"), (20.0, "update"), (60.0, "evaluate")):
            progress.stage(stage)
            clock.now += seconds
            progress.advance({"reward": 0.81, "mas": 47.1})
    assert progress.plain
    assert stream.getvalue().splitlines() == [
        "epoch 1/4  stage=sample  eta 30s  reward=0.81 mas=47.1",  # 10 s a step, 3 left
        "epoch 2/4  stage=update  eta 30s  reward=0.81 mas=47.1",  # mean(10, 20) x 2 left
        "epoch 3/4  stage=evaluate  eta 40s  reward=0.81 mas=47.1",  # mean of the last 2 (20, 60) x 1
    ]


def test_weighted_steps_give_the_eta_in_seconds_per_unit_of_weight() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with StepProgress("demo", total=3, weights=[1.0, 60.0, 3.0], stream=stream, clock=clock) as progress:
        for seconds in (2.0, 100.0, 9.0):
            clock.now += seconds
            progress.advance()
    assert stream.getvalue().splitlines() == [
        "demo 1/3  eta 2m06s",  # 2 s per unit x 63 units left
        "demo 2/3  eta 5s",  # (2 + 100) s / 61 units x 3 units left
        "demo 3/3  eta 0s",
    ]


@pytest.mark.parametrize("weights", [[1.0, 2.0], [1.0, 0.0, 1.0]])
def test_weights_must_be_one_positive_number_per_step(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="one per step"):
        StepProgress("demo", total=3, weights=weights)


def test_plain_mode_counts_from_a_resumed_step_and_can_log_instead(caplog: pytest.LogCaptureFixture) -> None:
    stream, clock, logger = io.StringIO(), FakeClock(), logging.getLogger("tests.progress")
    progress = StepProgress("epoch", total=60, completed=57, stream=stream, logger=logger, clock=clock)
    with caplog.at_level(logging.INFO, logger="tests.progress"), progress:
        clock.now += 252.0
        progress.advance()
    assert stream.getvalue() == ""
    assert [r.getMessage() for r in caplog.records] == ["epoch 58/60  eta 8m24s"]


def test_disabled_progress_writes_nothing() -> None:
    stream = FakeTerminal()
    with StepProgress("synth", total=3, stream=stream, enabled=False) as progress:
        progress.advance()
    assert stream.getvalue() == ""


def test_terminal_mode_renders_a_bar_and_no_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    stream, clock = FakeTerminal(), FakeClock()
    with StepProgress("epoch", total=3, stream=stream, clock=clock) as progress:
        assert not progress.plain
        progress.stage("update")
        for _ in range(3):
            clock.now += 5.0
            progress.advance({"reward": 0.5} | {f"metric_{i}": 1.0 for i in range(12)})
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())  # drop the ANSI codes
    assert "epoch" in text and "3/3" in text and "update" in text and "reward=0.5" in text
    assert "epoch 1/3" not in text  # no plain lines on a terminal
    rows = [row for row in re.split(r"[\r\n]", text) if row.strip()]
    assert all(len(row) <= 80 for row in rows) and any(row.rstrip().endswith("…") for row in rows)  # cut, not wrapped


def test_nested_progress_on_one_terminal_shares_the_display() -> None:
    stream = FakeTerminal()
    with StepProgress("demo", total=2, stream=stream) as outer:
        with StepProgress("synth train.jsonl", total=2, stream=stream) as inner:  # no LiveError
            inner.advance()
            inner.advance()
        outer.advance()
    assert "synth train.jsonl" in stream.getvalue()


def test_env_override_forces_plain_lines_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = FakeTerminal()
    assert not is_plain(stream)
    monkeypatch.setenv(ENV_VAR, "plain")
    assert is_plain(stream)
    with StepProgress("bench", total=2, stream=stream) as progress:
        progress.advance({"edits_per_s": 12.5})
    assert stream.getvalue().startswith("bench 1/2  eta ")
    assert stream.getvalue().endswith("  edits_per_s=12.5\n")
    assert stream.getvalue().count("\n") == 1


def test_data_synth_without_a_terminal_prints_one_plain_line_per_pair(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR} | {"COLUMNS": "80", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "motionnft.cli", "data", "synth", "--out", str(tmp_path / "d"), "--n", "6"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # 6 pairs at --eval-fraction 0.2: one per category, so every pair is in train (round(0.2) = 0).
    lines = result.stderr.splitlines()
    assert [line.split("  ")[0] for line in lines] == [f"synth train.jsonl {i}/6" for i in range(1, 7)]
    assert all(re.fullmatch(r"synth train\.jsonl \d/6  eta \d+s", line) for line in lines)
    assert "\x1b" not in result.stderr  # no terminal codes in a log
    assert "wrote 6 pairs" in result.stdout
