"""Print the pinned requirement set of pyproject extras, one requirement a line (stdlib only).

    python docker/requirements.py reward            # core dependencies + reward + serving
    python docker/requirements.py --pyproject P judge

The Dockerfiles' builder stage copies only pyproject.toml and this script, installs the printed set
into /opt/venv (a layer that stays cached until a pin changes), then copies the source and installs
the project itself with `--no-deps`. The set is derived from pyproject.toml on every build, so there
is no requirements file to keep in step with it.

`motionnft[a,b]` self-references are expanded recursively; duplicates are printed once, in first-seen
order; an unknown extra, or a requirement listed twice with different pins, is an error (exit 2).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# PEP 508 name, optional [extras], then the rest (specifier and marker) verbatim.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def canonical(name: str) -> str:
    """PEP 503 normalised project name (`Foo_Bar` and `foo-bar` are one project)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(requirement: str) -> tuple[str, list[str], str]:
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    name, extras, rest = match.groups()
    names = [e.strip() for e in (extras or "[]")[1:-1].split(",") if e.strip()]
    return name, names, rest.strip()


def requirement_set(pyproject: dict, extras: list[str]) -> list[str]:
    """The core dependencies plus every requirement the extras pull in, self-references expanded."""
    project = pyproject["project"]
    own = canonical(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: dict[str, str] = {}  # canonical name -> requirement line

    def add(requirement: str) -> None:
        name, sub_extras, _rest = _split(requirement)
        if canonical(name) == own:
            for extra in sub_extras:
                expand(extra)
            return
        key = canonical(name)
        if key in out and out[key] != requirement.strip():
            raise ValueError(f"{name} is pinned twice: {out[key]!r} and {requirement.strip()!r}")
        out.setdefault(key, requirement.strip())

    seen: set[str] = set()

    def expand(extra: str) -> None:
        if extra not in optional:
            raise ValueError(f"no extra {extra!r} in pyproject (extras: {', '.join(sorted(optional))})")
        if extra in seen:  # a diamond (train -> raft -> reward, judge-local -> judge) or a cycle
            return
        seen.add(extra)
        for requirement in optional[extra]:
            add(requirement)

    for requirement in project.get("dependencies", []):
        add(requirement)
    for extra in extras:
        expand(extra)
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="+", help="pyproject extras, e.g. reward judge")
    parser.add_argument("--pyproject", type=Path, default=Path(__file__).resolve().parent.parent / "pyproject.toml")
    args = parser.parse_args(argv)
    try:
        lines = requirement_set(tomllib.loads(args.pyproject.read_text()), args.extras)
    except (OSError, ValueError, KeyError) as exc:
        print(f"requirements.py: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
