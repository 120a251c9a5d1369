"""`motionnft bench ...`: MotionEdit-Bench from the command line.

`score` is here (it needs only the library and the two services over HTTP); `generate` renders with
the policies and Ray, so the top-level `motionnft` command (``cli.main``) registers it on `bench_app`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from motionnft.cli_errors import fail, plain_typer

bench_app = plain_typer("MotionEdit-Bench: render edits, score them, report.")

EXIT_UNREADABLE = 2


def parse_models(values: list[str]) -> dict[str, Path]:
    """NAME=DIR pairs, in order; a NAME repeats nowhere and holds no '|' (it keys the pairs table)."""
    models: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        name = name.strip()
        if not sep or not name or not folder:
            raise typer.BadParameter(f"expected NAME=DIR, got {value!r}", param_hint="'--model'")
        if "|" in name or name in models:
            raise typer.BadParameter(f"model name {name!r} is repeated or holds '|'", param_hint="'--model'")
        path = Path(folder)
        if not path.is_dir():
            raise typer.BadParameter(f"{name}: {path} is not a folder", param_hint="'--model'")
        models[name] = path
    return models


@bench_app.command()
def score(
    bench: Annotated[Path, typer.Option(exists=True, help="The bench: a jsonl file, or a parquet file or folder.")],
    model: Annotated[list[str], typer.Option(help="NAME=DIR of one model's outputs (DIR/<item id>.png); repeat.")],
    out: Annotated[Path, typer.Option(file_okay=False, help="Results folder (created; reruns reuse its cache).")],
    reward_url: Annotated[str | None, typer.Option(help="A running reward API; default: start one here.")] = None,
    judge_url: Annotated[str | None, typer.Option(help="A running judge service; default: start one here.")] = None,
    win_rate: Annotated[str, typer.Option(help="scores (higher Overall wins, the paper's) or judge.")] = "scores",
    concurrency: Annotated[int, typer.Option(min=1, help="Items scored at once.")] = 8,
    timeout_s: Annotated[float, typer.Option(min=1.0, help="Per service call attempt, seconds.")] = 120.0,
    flows: Annotated[bool, typer.Option(help="Draw the flow pictures of the HTML page.")] = True,
) -> None:
    """Score every model's edits of BENCH: MAS, Fidelity, Preservation, Coherence, Overall, Win Rate.

    Writes OUT/results.json, OUT/report.md and OUT/index.html. Tokens, when the services need them,
    come from MOTIONNFT_REWARD_TOKEN and MOTIONNFT_JUDGE_TOKEN.
    """
    from motionnft.bench.items import BenchError
    from motionnft.bench.report import markdown_report
    from motionnft.bench.run import ScoreJob, run_score
    from motionnft.bench.scoring import CALL_ERRORS
    from motionnft.stack import StackError

    if win_rate not in ("scores", "judge"):
        raise typer.BadParameter(f"expected scores or judge, got {win_rate!r}", param_hint="'--win-rate'")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    job = ScoreJob(bench, parse_models(model), out, reward_url, judge_url, win_rate, concurrency,  # type: ignore[arg-type]
                   timeout_s, flows)  # fmt: skip
    try:
        run = run_score(job)
    except (BenchError, StackError) as exc:
        fail(str(exc), EXIT_UNREADABLE)
    except CALL_ERRORS as exc:  # the first call, which reads the services' versions, failed
        fail(f"the services did not answer ({type(exc).__name__}: {exc})", EXIT_UNREADABLE)
    typer.echo(markdown_report(run.results))
    busy = run.busy
    judge_s = busy.judge_s + busy.compare_s
    typer.echo(f"{len(run.results.items)} item scores in {run.wall_s:.1f} s; waiting on flows {busy.reward_s:.1f} s, "
               f"judge {judge_s:.1f} s, files {busy.io_s:.1f} s (summed over concurrent items)")  # fmt: skip
    if run.failed_pairs:
        typer.echo(f"{run.failed_pairs} comparisons could not be judged and were left out of Win Rate", err=True)
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'index.html'}")
