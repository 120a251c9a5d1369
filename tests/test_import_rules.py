"""The rooms' import rules (docs/architecture.md, "Import rules"), read from the source with ``ast``.

Every ``.py`` file of the repository is parsed and every import in it counts, at any nesting level:
module level, under ``if TYPE_CHECKING:``, inside functions (a command's lazy imports), and
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name. Relative imports are
resolved against the file's package. A failure lists every violation as ``file:line``.

The rooms, from the bottom: ``motionnft`` (the library) < ``services`` < ``workers`` < ``trainer``,
``benchmarks`` beside them, and ``cli`` (the ``motionnft`` command) on top of them all. Workers and
the trainer reach the services over HTTP, never by import; ``trainer`` may import ``workers``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY = "cli"  # the top-level entry package: the `motionnft` command, which may import every room
ROOMS = ("motionnft", "services", "workers", "trainer", "benchmarks", ENTRY, "tests")
SKIPPED_DIRS = {"venv", "build", "dist", "runs", "node_modules", "__pycache__"}  # and hidden, *.egg-info

# (file, imported module) pairs that break a rule today and are being fixed in their own files.
# Keep it minimal: an entry that matches no violation any more fails `test_known_exceptions_are_still_needed`.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    """One imported module name and where it is imported."""

    file: str  # relative to the repository, with forward slashes
    line: int
    module: str  # the importing file's dotted name
    target: str  # the dotted name imported

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files() -> Iterator[Path]:
    for path in sorted(REPO.rglob("*.py")):
        folders = path.relative_to(REPO).parts[:-1]
        if not any(part in SKIPPED_DIRS or part.startswith(".") or part.endswith(".egg-info") for part in folders):
            yield path


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from {'.' * level}{name} import ...`` written in ``module``."""
    if level == 0:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def _is_dynamic_import(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Name) and func.id in {"__import__", "import_module"}) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module"
    )


def parse_imports(source: str, file: str, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every name ``source`` imports: ``import a.b`` gives a.b; ``from a import b`` gives a and a.b (b may be a
    submodule); a literal ``importlib.import_module`` or ``__import__`` call gives its argument."""
    for node in ast.walk(ast.parse(source, filename=file)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(file, node.lineno, module, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.level, node.module)
            yield Import(file, node.lineno, module, base)
            for alias in node.names:
                if alias.name != "*":
                    yield Import(file, node.lineno, module, f"{base}.{alias.name}" if base else alias.name)
        elif isinstance(node, ast.Call) and node.args and _is_dynamic_import(node):
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield Import(file, node.lineno, module, first.value)


def imports_of(path: Path) -> Iterator[Import]:
    source = path.read_text(encoding="utf-8")
    yield from parse_imports(source, path.relative_to(REPO).as_posix(), module_name(path), path.name == "__init__.py")


def within(name: str, *packages: str) -> bool:
    """Is ``name`` one of ``packages`` or inside one of them?"""
    return any(name == package or name.startswith(package + ".") for package in packages)


@dataclass(frozen=True)
class Rule:
    """Modules inside ``importers`` (every module when empty), less those inside ``exempt``, import nothing
    inside ``forbidden``."""

    id: str
    says: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()

    def binds(self, module: str) -> bool:
        return (not self.importers or within(module, *self.importers)) and not within(module, *self.exempt)


RULES = [
    Rule(
        "library-below-all",
        "the library imports no room above it, no web framework and no Ray",
        importers=("motionnft",),
        forbidden=("services", "workers", "trainer", "benchmarks", ENTRY, "fastapi", "starlette", "uvicorn", "ray"),
    ),
    Rule(
        "reward-api-apart",
        "the reward API imports nothing of the judge",
        importers=("services.reward_api",),
        forbidden=("services.mllm_judge",),
    ),
    Rule(
        "judge-apart",
        "the judge imports nothing of the reward API",
        importers=("services.mllm_judge",),
        forbidden=("services.reward_api",),
    ),
    Rule(
        "services-over-http",
        "only the services, their tests and the entry import services (workers and the trainer use HTTP)",
        importers=(),
        forbidden=("services",),
        exempt=("services", "tests", ENTRY),
    ),
    Rule(
        "workers-below-trainer", "workers import nothing of the trainer", importers=("workers",), forbidden=("trainer",)
    ),
    Rule(
        "entry-on-top",
        "no room imports the entry package (only its tests do)",
        importers=(),
        forbidden=(ENTRY,),
        exempt=(ENTRY, "tests"),
    ),
]


def violations(imports: list[Import], rule: Rule) -> list[Import]:
    """The imports that break ``rule``, one per line (``from a import b`` yields a and a.b: the longer)."""
    worst: dict[tuple[str, int], Import] = {}
    for item in imports:
        if rule.binds(item.module) and within(item.target, *rule.forbidden):
            key = (item.file, item.line)
            if key not in worst or len(item.target) > len(worst[key].target):
                worst[key] = item
    return sorted(worst.values(), key=lambda item: (item.file, item.line))


def excepted(item: Import) -> bool:
    return any(item.file == file and within(item.target, target) for file, target in KNOWN_EXCEPTIONS)


def cycles(imports: list[Import], modules: set[str]) -> list[list[str]]:
    """The import cycles among ``modules`` (strongly connected groups of two or more, Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for item in imports:
        if item.module in modules and item.target in modules and item.target != item.module:
            graph[item.module].add(item.target)
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return sorted(found)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return [item for path in python_files() for item in imports_of(path)]


def test_the_walk_sees_every_room(imports: list[Import]) -> None:
    rooms = {item.module.split(".")[0] for item in imports}
    assert set(ROOMS) <= rooms, f"rooms with no parsed imports: {sorted(set(ROOMS) - rooms)}"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.id)
def test_room_rule(imports: list[Import], rule: Rule) -> None:
    broken = [item for item in violations(imports, rule) if not excepted(item)]
    assert not broken, f"{rule.says}:\n" + "\n".join(f"  {item}" for item in broken)


def test_known_exceptions_are_still_needed(imports: list[Import]) -> None:
    found = [item for rule in RULES for item in violations(imports, rule)]
    stale = sorted(
        (file, target)
        for file, target in KNOWN_EXCEPTIONS
        if not any(item.file == file and within(item.target, target) for item in found)
    )
    assert not stale, f"no longer violations, remove them from KNOWN_EXCEPTIONS: {stale}"


def test_no_import_cycles(imports: list[Import]) -> None:
    """No module imports, even only for type checking, one that imports it back (was synth <-> synth_io)."""
    modules = {module_name(path) for path in python_files()}
    found = cycles(imports, {module for module in modules if not within(module, "tests")})
    assert not found, "import cycles:\n" + "\n".join(f"  {' <-> '.join(group)}" for group in found)


def test_the_checker_sees_imports_at_every_level() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from services.reward_api import app\n"
        "def command():\n"
        "    import trainer.loop\n"
        "    from . import sibling\n"
        "    from ..contracts import client\n"
        "    importlib.import_module('ray')\n"
        "class Later:\n"
        "    def method(self):\n"
        "        __import__('workers.rollout')\n"
    )
    found = list(parse_imports(source, "motionnft/data/probe.py", "motionnft.data.probe"))
    assert {(3, "services.reward_api.app"), (5, "trainer.loop"), (6, "motionnft.data.sibling"),
            (7, "motionnft.contracts.client"), (8, "ray"), (11, "workers.rollout")} <= {
        (item.line, item.target) for item in found
    }  # fmt: skip
    assert [str(item) for item in violations(found, RULES[0])] == [  # not its own modules, lines 6 and 7
        "motionnft/data/probe.py:3: imports services.reward_api.app",
        "motionnft/data/probe.py:5: imports trainer.loop",
        "motionnft/data/probe.py:8: imports ray",
        "motionnft/data/probe.py:11: imports workers.rollout",
    ]


def test_the_checker_finds_a_cycle() -> None:
    first = parse_imports("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from b import X\n", "a.py", "a")
    second = parse_imports("import a\n", "b.py", "b")
    assert cycles([*first, *second], {"a", "b", "c"}) == [["a", "b"]]
