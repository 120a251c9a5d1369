"""The `motionnft` command: the library's commands plus those that need the rooms above it.

`score`, `data` and `bench score` are the library's (`motionnft.cli`, which `python -m motionnft.cli`
runs alone); `serve`, `train`, `pretrain-tiny`, `plot` and `bench generate` are here. Each of these
imports its room inside the function that runs it, so `motionnft score` starts without Ray, FastAPI
or diffusers, and only the extras a command needs have to be installed. Errors are one plain line on
stderr for the whole command (``motionnft.cli_errors.PlainErrorsGroup``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from cli.mine import mine_command
from motionnft.bench.cli import bench_app
from motionnft.cli import app as library_app
from motionnft.cli_errors import fail, plain_typer
from motionnft.data.cli import data_app

app = plain_typer("MotionNFT: motion-aware reward and RL post-training for image editing.")
app.add_typer(library_app)  # no name: `score`, `data` and `bench` join this app's top level
data_app.command("mine")(mine_command)  # mining's Ray Data path needs the workers room
serve_app = typer.Typer(help="Run a MotionNFT service.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")


@serve_app.command("reward")
def serve_reward(
    host: Annotated[str | None, typer.Option(help="Bind address (default REWARD_API_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default REWARD_API_PORT or 8001).")] = None,
) -> None:
    """Run the motion reward API (settings from REWARD_API_* variables)."""
    if host is not None:
        os.environ["REWARD_API_HOST"] = host
    if port is not None:
        os.environ["REWARD_API_PORT"] = str(port)
    from services.reward_api.__main__ import main

    main()


@app.command()
def train(
    config: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="A YAML preset under configs/.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a setting: a.b=value (repeatable).")] = None,
    no_resume: Annotated[bool, typer.Option(help="Ignore checkpoints in the run directory.")] = False,
) -> None:
    """Run (or resume) MotionNFT training; same as `python -m trainer`."""
    from trainer.__main__ import main as train_main

    train_main(
        [
            "--config",
            str(config),
            *[a for s in set_ or [] for a in ("--set", s)],
            *(["--no-resume"] if no_resume else []),
        ]
    )


# Each family's tiny checkpoint and the settings it was made with (its pretrain.json records them; the
# policy factory resolves `pretrained: tiny` to the same directories). Qwen's causal 3D VAE costs ~5x
# FLUX's tiny VAE per step on a CPU, so its recipe is shorter: it only has to run the demo end to end.
TINY_RECIPES: dict[str, dict[str, Any]] = {
    "flux_kontext": {
        "out": "checkpoints/tiny-kontext",
        "pairs": 1200,
        "vae_steps": 1500,
        "steps": 10000,
        "schedule": "cosine",
    },
    "qwen_image_edit": {
        "out": "checkpoints/tiny-qwen-image-edit",
        "pairs": 400,
        "vae_steps": 200,
        "steps": 400,
        "schedule": "constant",
    },
}


@app.command("pretrain-tiny")
def pretrain_tiny(
    family: Annotated[str, typer.Option(help=f"The policy family: one of {', '.join(TINY_RECIPES)}.")] = "flux_kontext",
    out: Annotated[
        Path | None, typer.Option(help="Where to write the diffusers directory (default: the family's).")
    ] = None,
    pairs: Annotated[int | None, typer.Option(help="Synthetic pairs to learn from (default: the family's).")] = None,
    data_seed: Annotated[
        int, typer.Option(help="Seed of the synthetic pairs (the demo uses 0: keep them apart).")
    ] = 1000,
    vae_steps: Annotated[int | None, typer.Option(help="Autoencoder steps (default: the family's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Flow-matching steps (default: the family's).")] = None,
    batch_size: int = 16,
    lr: float = 1e-3,
    schedule: Annotated[
        Literal["constant", "cosine"] | None,
        typer.Option(help="Flow-matching learning rate: constant or cosine (default: the family's)."),
    ] = None,
    seed: int = 0,
    size: int = 64,
) -> None:
    """Pre-train a family's embedded tiny policy on synthetic motion edits (supervised flow matching)."""
    if family not in TINY_RECIPES:
        raise typer.BadParameter(f"no tiny policy for {family!r}; one of {sorted(TINY_RECIPES)}", param_hint="--family")
    recipe = TINY_RECIPES[family]
    from motionnft.data.synth import generate

    if family == "flux_kontext":
        from trainer.pretrain import pretrain_tiny as run
    else:
        from trainer.pretrain_qwen import pretrain_tiny_qwen as run

    data = generate(recipe["pairs"] if pairs is None else pairs, data_seed, size)
    path = run(data, Path(recipe["out"]) if out is None else out,
               steps=recipe["steps"] if steps is None else steps, batch_size=batch_size, lr=lr, seed=seed, size=size,
               vae_steps=recipe["vae_steps"] if vae_steps is None else vae_steps,
               schedule=recipe["schedule"] if schedule is None else schedule)  # fmt: skip
    typer.echo((path / "pretrain.json").read_text())


@app.command()
def plot(run_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False)]) -> None:
    """Draw a run's training curves to RUN_DIR/curves.png."""
    from trainer.plots import plot_run

    typer.echo(str(plot_run(run_dir)))


EXIT_FAILED_ITEMS = 1
EXIT_USAGE = 2


@bench_app.command("generate")
def bench_generate(
    bench: Annotated[Path, typer.Option(exists=True, help="The bench: a jsonl file, or a parquet file or folder.")],
    policy: Annotated[str, typer.Option(help="A run directory, checkpoint-*.pt, config preset or diffusers folder.")],
    name: Annotated[str, typer.Option(help="The model's name: its outputs go to OUT/NAME/<item id>.png.")],
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder of every model's outputs (created).")],
    seed: Annotated[int, typer.Option(min=0, help="Seeds every item's noise with (seed, item id).")] = 0,
    steps: Annotated[int | None, typer.Option(min=1, help="Sampler steps (default: the policy's own).")] = None,
    guidance: Annotated[float | None, typer.Option(min=0.0, help="Guidance (default: the policy's own).")] = None,
    size: Annotated[int, typer.Option(min=16, help="Square side of inputs and edits, pixels.")] = 512,
    limit: Annotated[int | None, typer.Option(min=1, help="Render only the first N items.")] = None,
) -> None:
    """Render one edit per bench item into OUT/NAME (kept PNGs are not rendered again); exit 1 if any failed."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise typer.BadParameter(f"{name!r} is not a plain folder name", param_hint="'--name'")
    from motionnft.data.formats import DatasetFormatError, load_dataset
    from trainer.bench_sources import resolve_source
    from workers.bench_generate import BenchReadError, generate_bench
    from workers.bench_output import OutputError
    from workers.bench_render import RendererError
    from workers.bench_tasks import SpecError

    try:
        records = load_dataset(bench)
    except (DatasetFormatError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="'--bench'") from exc
    try:
        source = resolve_source(policy, size=size, steps=steps, guidance=guidance)
    except SpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--policy'") from exc
    try:
        summary = generate_bench(records, source, out / name, seed=seed, limit=limit)
    except (BenchReadError, OutputError) as exc:
        fail(str(exc), EXIT_USAGE)
    except RendererError as exc:
        fail(str(exc), EXIT_FAILED_ITEMS)
    typer.echo(f"{summary.folder}: {summary.rendered} rendered, {summary.kept} kept, {len(summary.failed)} failed "
               f"of {summary.total}")  # fmt: skip
    if summary.failed:
        fail(f"{len(summary.failed)} of {summary.total} items failed; see {summary.folder / 'failures.jsonl'}",
             EXIT_FAILED_ITEMS)  # fmt: skip


if __name__ == "__main__":
    app()
