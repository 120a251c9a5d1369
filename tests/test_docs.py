"""The project documents itself: every relative Markdown link resolves inside the repository, nothing
points outside a clone (a user's checkout has no sibling `shared` folder), and docs/method.md carries
the method's constants under the section numbers the code refers to."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
# Built by concatenation so this file does not mention the path it forbids.
OUTSIDE_CLONE = "../" + "shared"

# [text](target) or [text](target "title"); the text may hold backticks, not brackets.
LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def repo_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (git), else a walk that skips caches and runs."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout  # fmt: skip
        paths = [REPO / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in REPO.rglob("*") if not SKIPPED_DIRS.intersection(p.relative_to(REPO).parts)]
    return sorted(p for p in paths if p.is_file())


def markdown_files() -> list[Path]:
    return [p for p in repo_files() if p.suffix.lower() == ".md"]


def relative_links(text: str) -> list[str]:
    """Targets of the inline links outside fenced code blocks, anchors stripped; external ones left out."""
    targets = []
    for target in LINK.findall(FENCE.sub("", text)):
        if target.startswith("#") or SCHEME.match(target):  # in-page anchor, http(s)://, mailto:, ...
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path:
            targets.append(path)
    return targets


def test_markdown_files_are_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/method.md", "docs/architecture.md"} <= names


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve_inside_the_repo(doc: Path) -> None:
    broken = []
    for target in relative_links(doc.read_text(encoding="utf-8")):
        resolved = (doc.parent / target).resolve()
        if not resolved.is_relative_to(REPO) or not resolved.exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links to missing or outside files: {broken}"


def test_link_parser() -> None:
    text = """[`docs/a.md`](docs/a.md) [b](../b.md#part "title") [web](https://x.y/z) [m](mailto:a@b)
[anchor](#here) <https://auto.link>
```
[in code](not/a/link.md)
```
"""
    assert relative_links(text) == ["docs/a.md", "../b.md"]


def test_readme_points_at_the_docs() -> None:
    links = relative_links((REPO / "README.md").read_text(encoding="utf-8"))
    assert "docs/method.md" in links
    assert "docs/architecture.md" in links


def test_no_file_points_outside_the_clone() -> None:
    offenders = []
    for path in repo_files():
        raw = path.read_bytes()
        if b"\0" in raw:  # binary: weights, images
            continue
        text = raw.decode("utf-8", errors="replace")
        offenders += [
            f"{path.relative_to(REPO)}:{n}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE_CLONE in line
        ]
    assert not offenders, f"{OUTSIDE_CLONE} does not exist in a user's clone: {offenders}"


METHOD_CONSTANTS = [
    "2512.10284",  # the paper
    "1e-6",  # eps
    "q = 0.4",
    "0.002",  # direction mask
    "tau = 0.01",
    "0.7 * D_vec + 0.2 * D_dir + 0.1 * M_move",
    "eps^q",  # D_min
    "D_max = 1.0",
    "half to even",
    "Directly response the score number",  # the judge prompt, verbatim
    "K = 8",
    "1e-4",  # std floor, KL weight, weight decay
    "[-5, 5]",  # advantage clip
    "clamp(A / 5 / 2 + 0.5, 0, 1)",
    "std < 0.05",
    "mean > 0.9",
    "beta = 1.0",
    "min(0.001 * step, 0.5)",
    "0.9",  # EMA
    "r = 32",
    "alpha = 64",
    "to_add_out",
    "3e-4",
    "(0.9, 0.999)",
    "1e-8",
    "24 prompts x 8",
    "512x512",
    "300 steps",
    "210 steps",
    "mean|P| / mean|G| < 0.01",
    "57.23",  # the published results table
]


@pytest.mark.parametrize("constant", METHOD_CONSTANTS)
def test_method_has_constant(constant: str) -> None:
    assert constant in (REPO / "docs" / "method.md").read_text(encoding="utf-8")


def test_method_keeps_the_section_numbers_the_code_cites() -> None:
    text = (REPO / "docs" / "method.md").read_text(encoding="utf-8")
    for n in range(1, 7):
        assert re.search(rf"^## {n}\. ", text, re.MULTILINE), f"docs/method.md lost section {n}"
