"""`motionnft data ...`: make a synthetic MotionEdit-style dataset, validate any dataset.

``data_app`` is a typer sub-app; the top-level command mounts it as ``motionnft data``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from motionnft.cli_errors import fail, plain_typer
from motionnft.data.formats import DatasetFormatError, load_dataset
from motionnft.data.records import Preprocess
from motionnft.data.synth import CATEGORIES, generate
from motionnft.data.synth_io import split, write_dataset
from motionnft.data.validation import validate
from motionnft.mining.cli import video_corpus_command

data_app = plain_typer("MotionEdit datasets: make a synthetic one, validate any.")

EXIT_PROBLEMS = 1
EXIT_UNREADABLE = 2


@data_app.command()
def synth(
    out: Annotated[Path, typer.Option(file_okay=False, help="Dataset folder to write (created if missing).")],
    n: Annotated[int, typer.Option(min=1, help="Number of pairs, categories round-robin.")] = 120,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (also seeds the split).")] = 0,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 64,
    eval_fraction: Annotated[float, typer.Option(min=0.0, max=0.99, help="Share of each category for eval.")] = 0.2,
) -> None:
    """Write N synthetic pairs with their true flow to OUT: train.jsonl, eval.jsonl, images/, flows/."""
    started = time.perf_counter()
    pairs = generate(n, seed, size)
    train, evaluation = split(pairs, eval_fraction, seed)
    train_path = write_dataset(train, out, "train.jsonl")
    eval_path = write_dataset(evaluation, out, "eval.jsonl")
    elapsed = time.perf_counter() - started
    train_counts = Counter(p.category for p in train)
    eval_counts = Counter(p.category for p in evaluation)
    typer.echo(f"wrote {n} pairs ({size}x{size}) to {out} in {elapsed:.1f} s")
    typer.echo(f"{'category':<16}{'train':>7}{'eval':>7}")
    for category in CATEGORIES:
        typer.echo(f"{category:<16}{train_counts[category]:>7}{eval_counts[category]:>7}")
    typer.echo(f"{'total':<16}{len(train):>7}{len(evaluation):>7}")
    typer.echo(f"train: {train_path}\neval:  {eval_path}")


@data_app.command("validate")
def validate_command(
    path: Annotated[Path, typer.Argument(help="A .jsonl or .parquet file, or a folder of parquet files.")],
    decode: Annotated[bool, typer.Option(help="Decode every image (else only check files exist).")] = True,
    size: Annotated[int | None, typer.Option(min=1, help="Also run the training preprocessing at this size.")] = None,
    max_problems: Annotated[int, typer.Option(min=1, help="How many problems to print.")] = 50,
) -> None:
    """Check every record of PATH; print the problems and exit 1 if there are any (2 if PATH is unreadable)."""
    try:
        records = load_dataset(path)
    except (FileNotFoundError, DatasetFormatError, ImportError) as exc:
        fail(str(exc), EXIT_UNREADABLE)
    preprocess = None if size is None else Preprocess(size=size)
    problems = validate(records, preprocess=preprocess, decode=decode)
    if problems:
        for problem in problems[:max_problems]:
            typer.echo(str(problem))
        if len(problems) > max_problems:
            typer.echo(f"... and {len(problems) - max_problems} more")
        rows = len({p.index for p in problems})
        typer.echo(f"{len(problems)} problem(s) in {rows} of {len(records)} record(s)", err=True)
        raise typer.Exit(EXIT_PROBLEMS)
    categories = Counter(r.category or "(none)" for r in records)
    summary = ", ".join(f"{name} {count}" for name, count in sorted(categories.items()))
    typer.echo(f"OK: {len(records)} record(s) in {path} ({summary})")


# The corpus of clips with known mining answers; `data mine` itself is added by the top-level cli.
data_app.command("video-corpus")(video_corpus_command)
