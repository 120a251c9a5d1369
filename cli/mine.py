"""`motionnft data mine`: cut videos into windows and keep the pairs whose motion is worth learning.

Here rather than in the library because `--ray-address` runs the stages as a Ray Data pipeline
(``workers.mining``); without it the library's process pool does (``motionnft.mining.run``). Both
are imported when the command runs. docs/mining.md describes the stages, settings and reason codes.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import typer

from motionnft.cli_errors import fail

EXIT_USAGE = 2


def mine_command(
    videos: Annotated[
        Path, typer.Option(help="A folder of videos (searched recursively) or a file listing one per line.")
    ],
    out: Annotated[Path, typer.Option(file_okay=False, help="Dataset folder to write (resumed when it exists).")],
    window_s: Annotated[float, typer.Option(min=0.1, help="Window length in seconds.")] = 3.0,
    judge_url: Annotated[
        str | None, typer.Option(help="Judge service root (curation rubrics); none: prefilter only.")
    ] = None,
    writer_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible API root that writes instructions (…/v1).")
    ] = None,
    writer_model: Annotated[str, typer.Option(help="Model name on the writer endpoint.")] = "Qwen/Qwen2.5-7B-Instruct",
    fmt: Annotated[Literal["jsonl", "parquet"], typer.Option("--format", help="Dataset file format.")] = "jsonl",
    workers: Annotated[int, typer.Option(min=1, help="Processes that decode and prefilter.")] = max(
        1, (os.cpu_count() or 2) - 1
    ),
    judge_concurrency: Annotated[int, typer.Option(min=1, help="Windows judged at once.")] = 8,
    ray_address: Annotated[
        str | None, typer.Option(help="Run as a Ray Data pipeline on this cluster ('local': a local Ray).")
    ] = None,
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="A threshold, NAME=VALUE (docs/mining.md).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Cut videos into windows, keep the pairs whose motion is worth learning: DIR/train.jsonl + DIR/manifest.jsonl."""
    from motionnft.mining.run import MiningJob
    from motionnft.mining.settings import MiningSettings
    from motionnft.mining.video import find_videos

    overrides: dict[str, str] = {"window_s": str(window_s)}
    for item in setting or []:
        name, sep, value = item.partition("=")
        if not sep:
            fail(f"--set {item!r}: expected NAME=VALUE", EXIT_USAGE)
        overrides[name.strip()] = value.strip()
    try:
        settings = MiningSettings.model_validate(overrides)
        found = find_videos(videos)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc), EXIT_USAGE)
    if not found:
        fail(f"no videos in {videos}", EXIT_USAGE)
    token = os.environ.get("MOTIONNFT_TOKEN")
    job = MiningJob([str(v) for v in found], out, settings, judge_url=judge_url, writer_url=writer_url,
                    writer_model=writer_model, token=token, fmt=fmt, workers=workers,
                    judge_concurrency=judge_concurrency, progress=progress)  # fmt: skip
    try:
        if ray_address is None:
            from motionnft.mining.run import mine_locally

            summary = mine_locally(job)
        else:
            from workers.mining import mine_on_ray

            summary = mine_on_ray(job, None if ray_address == "local" else ray_address)
    except ValueError as exc:  # settings differ from the folder's, or a hand-broken manifest
        fail(str(exc), EXIT_USAGE)
    reasons = Counter(r.reason for r in summary.records if r.status == "rejected")
    typer.echo(f"{len(summary.records)} window(s) of {len(found)} video(s): "
               + ", ".join(f"{status} {summary.counts[status]}" for status in
                           ("kept", "rejected", "undecided", "unreadable")))  # fmt: skip
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], str(item[0]))):
        typer.echo(f"  rejected {reason}: {count}")
    if summary.counts["undecided"]:
        typer.echo(f"{summary.counts['undecided']} undecided (judge or writer failed): run the same command again "
                   "to retry only those")  # fmt: skip
    if judge_url is None:
        typer.echo('no --judge-url: pairs are prefiltered only ("judged": false), not curated')
    typer.echo(f"dataset: {summary.dataset}\nmanifest: {out / 'manifest.jsonl'}")
