"""The `motionnft` command, the one room that may import every other.

The library (`motionnft`) imports no room above it, so the commands that need the trainer, the
workers or the services live here, above them all: `serve`, `train`, `pretrain-tiny` and `plot`
(`cli.main`), mounted beside the library's own `score` and `data` (`motionnft.cli`). Nothing but
tests imports this package. It is called `cli` because that is all it is: the command line of the
whole project, a thin shell over the rooms below (a top-level name like `app` would read as the
services' FastAPI apps). `python -m cli` is the same as the `motionnft` script.
"""
