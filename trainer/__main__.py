"""`python -m trainer --config configs/demo_cpu.yaml --set run.epochs=3`: run (or resume) MotionNFT."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from motionnft.cli_errors import echo_error
from trainer.config import ConfigError, load_config
from trainer.loop import RunStopped, TooManyDrops, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="A YAML preset under configs/.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="Override one setting, e.g. --set run.epochs=3 (repeatable).")  # fmt: skip
    parser.add_argument("--no-resume", action="store_true", help="Ignore checkpoints in the run directory.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        echo_error(str(exc))
        raise SystemExit(2) from None
    try:
        run_dir = train(config, resume=not args.no_resume)
    except (RunStopped, TooManyDrops) as exc:
        # One line and a failing status: a RayJob (or a shell loop) re-runs the entrypoint to resume.
        echo_error(str(exc))
        raise SystemExit(1) from None
    print(f"run directory: {run_dir}")


if __name__ == "__main__":
    main()
