"""The `motionnft` command: score edits locally, draw their flows, run the services."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from motionnft.contracts.images import DecodedImage, ImageError, decode_image_bytes

app = typer.Typer(help="MotionNFT: motion-aware reward and RL post-training for image editing.", no_args_is_help=True)
serve_app = typer.Typer(help="Run a MotionNFT service.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")

ImagePath = Annotated[Path, typer.Option(exists=True, dir_okay=False, readable=True)]


def _load(path: Path) -> DecodedImage:
    try:
        return decode_image_bytes(path.read_bytes())
    except ImageError as exc:
        raise typer.BadParameter(f"{path}: {exc}") from None


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
    group = ScoringGroup(_load(source), _load(target), [_load(p) for p in edit])
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


if __name__ == "__main__":
    app()
