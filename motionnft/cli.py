"""The `motionnft` command: score edits locally, draw their flows, run the services.

Errors are one plain line on stderr, ``error: <what and where>`` (see ``motionnft.cli_errors``), the
same at any terminal width, from the ``motionnft`` script and from ``python -m motionnft.cli`` alike.
Tracebacks of real bugs are Python's own, not Rich panels, so they survive being piped to a log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from motionnft.cli_errors import PlainErrorsGroup
from motionnft.contracts.images import DecodedImage, ImageError, decode_image_bytes
from motionnft.data.cli import data_app
from motionnft.data.records import MAX_IMAGE_FILE_BYTES, FileReadError, read_file_bounded

app = typer.Typer(
    help="MotionNFT: motion-aware reward and RL post-training for image editing.",
    no_args_is_help=True,
    cls=PlainErrorsGroup,
    pretty_exceptions_enable=False,
)
serve_app = typer.Typer(help="Run a MotionNFT service.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(data_app, name="data")

ImagePath = Annotated[Path, typer.Option(exists=True, dir_okay=False, readable=True)]


def _load(path: Path, option: str) -> DecodedImage:
    """Decode the image file given to ``option``; a bad one is a usage error naming option and path."""
    try:
        # The data room's bounded reader: a FIFO would block here forever, /dev/zero fill memory.
        return decode_image_bytes(read_file_bounded(path, MAX_IMAGE_FILE_BYTES))
    except FileReadError as exc:  # its message names the path already
        message = str(exc)
    except OSError as exc:
        message = f"{path}: {exc.strerror or exc}"
    except ImageError as exc:
        message = f"{path}: {exc}"
    raise typer.BadParameter(message, param_hint=f"'{option}'")


@app.command()
def score(
    source: ImagePath,
    target: ImagePath,
    edit: Annotated[list[Path], typer.Option(exists=True, dir_okay=False, help="An edited image; repeat.")],
    backend: Annotated[str, typer.Option(help="Flow backend: dis, raft_large, raft_small.")] = "dis",
    device: Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda:0.")] = "cpu",
    raft_checkpoint: Annotated[Path | None, typer.Option(help="RAFT weights file.")] = None,
    flow_image: Annotated[Path | None, typer.Option(help="Write a PNG of the flow fields here.")] = None,
) -> None:
    """Score edits of SOURCE against the motion from SOURCE to TARGET; prints JSON."""
    from motionnft.flow import build_flow_estimator
    from motionnft.scoring import MotionScorer, ScoringGroup

    options = {"checkpoint": raft_checkpoint} if backend.startswith("raft") else {}
    scorer = MotionScorer(build_flow_estimator(backend, device, **options))
    group = ScoringGroup(_load(source, "--source"), _load(target, "--target"), [_load(p, "--edit") for p in edit])
    flows = scorer.compute_flows([group])[0]
    rewards = scorer.rewards(flows)
    report = {
        "flow_backend": scorer.estimator.name,
        "reward_version": scorer.params.version,
        "edits": [
            {"edit": str(path), "reward": r.reward, "reward_continuous": r.reward_continuous, "terms": r.terms}
            for path, r in zip(edit, rewards, strict=True)
        ],
    }
    if flow_image is not None:
        from motionnft.flow.pictures import save_flow_picture

        save_flow_picture(flow_image, flows, [p.name for p in edit])
        report["flow_image"] = str(flow_image)
    typer.echo(json.dumps(report, indent=2))


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


@app.command("pretrain-tiny")
def pretrain_tiny(
    out: Annotated[Path, typer.Option(help="Where to write the diffusers directory.")] = Path(
        "checkpoints/tiny-kontext"
    ),
    pairs: Annotated[int, typer.Option(help="Synthetic pairs to learn from.")] = 1200,
    data_seed: Annotated[
        int, typer.Option(help="Seed of the synthetic pairs (the demo uses 0: keep them apart).")
    ] = 1000,
    vae_steps: Annotated[int, typer.Option(help="Autoencoder steps.")] = 1500,
    steps: Annotated[int, typer.Option(help="Flow-matching steps.")] = 3000,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    size: int = 64,
) -> None:
    """Pre-train the embedded tiny FLUX.1 Kontext policy on synthetic motion edits (supervised flow matching)."""
    from motionnft.data.synth import generate
    from workers.pretrain import pretrain_tiny as run

    path = run(generate(pairs, data_seed, size), out, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
               size=size, vae_steps=vae_steps)  # fmt: skip
    typer.echo((path / "pretrain.json").read_text())


@app.command()
def plot(run_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False)]) -> None:
    """Draw a run's training curves to RUN_DIR/curves.png."""
    from trainer.plots import plot_run

    typer.echo(str(plot_run(run_dir)))


if __name__ == "__main__":
    app()
