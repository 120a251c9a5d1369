"""`motionnft data video-corpus`: write the small corpus of clips with known mining answers.

Registered on the ``data`` sub-app by ``motionnft.data.cli``; `motionnft data mine` itself is in the
top-level ``cli`` package (its Ray Data path needs the workers room). The corpus module (OpenCV,
scikit-image) is imported when the command runs, so other ``data`` commands start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def video_corpus_command(
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder to write the clips to (created).")],
) -> None:
    """Write the small test corpus of clips with known answers (from scikit-image's photographs)."""
    from motionnft.mining.corpus import write_corpus

    expected = write_corpus(out)
    for name, windows in expected.items():
        typer.echo(f"{name:<20}" + ", ".join(f"{s}" + (f" ({r})" if r else "") for s, r in windows))
