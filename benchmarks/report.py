"""docs/benchmarks.md is shared by every `make bench-*` target: each owns one marked section."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

HEADER = """# Benchmarks

Each section is written by one `make bench-*` target and replaced when that target runs again.
Ratios are measured side by side in one run on the machine named in the section; absolute times are
only meaningful for that machine.
"""


def machine_description(device: str) -> str:
    """A one-line description of where the numbers came from."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cores = len(__import__("os").sched_getaffinity(0))
    return f"{platform.processor() or platform.machine()}, {cores} CPU cores, torch {torch.__version__}, CPU"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) the section `name` of the benchmarks page with `body`."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
