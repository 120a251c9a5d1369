"""The library's commands: score edits locally and draw their flows (`score`), make and check datasets (`data`).

The `motionnft` script runs the top-level entry package ``cli`` (``cli.main``), which mounts this app
and adds the commands that need the rooms above the library (`serve`, `train`, `pretrain-tiny`, `plot`),
which this module must not import. ``python -m motionnft.cli`` runs the library's commands alone.

Errors are one plain line on stderr, ``error: <what and where>`` (see ``motionnft.cli_errors``), the
same at any terminal width, from the ``motionnft`` script and from ``python -m motionnft.cli`` alike.
Tracebacks of real bugs are Python's own, not Rich panels, so they survive being piped to a log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from motionnft.bench.cli import bench_app
from motionnft.cli_errors import plain_typer
from motionnft.contracts.images import DecodedImage, ImageError, decode_image_bytes
from motionnft.data.cli import data_app
from motionnft.data.records import MAX_IMAGE_FILE_BYTES, FileReadError, read_file_bounded

app = plain_typer("MotionNFT's library commands: score edits, make and check datasets (`motionnft` has every command).")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")

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
            {
                "edit": str(path),
                "reward": r.reward,
                "reward_continuous": r.reward_continuous,
                "terms": r.terms,
                "mas": r.mas,
            }
            for path, r in zip(edit, rewards, strict=True)
        ],
    }
    if flow_image is not None:
        from motionnft.flow.pictures import save_flow_picture

        save_flow_picture(flow_image, flows, [p.name for p in edit])
        report["flow_image"] = str(flow_image)
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    app()
