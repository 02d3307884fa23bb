"""The layer import rules of DESIGN.md, and no import cycles.

Every module's imports are read with ``ast``, not imported: an import
inside a function counts for the layer rules (the layer still depends on
what it names) but not for cycles (it runs after both modules are loaded);
an import under ``if TYPE_CHECKING:`` counts for both, since a cycle of
types is as tangled as one of code.
"""

from __future__ import annotations

import ast
import configparser
import functools
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Top-level packages whose modules are checked for cycles.
PACKAGES = ("rtgateway", "bench")

RUNTIME, TYPING, DEFERRED = "runtime", "typing", "deferred"


@dataclass(frozen=True)
class Import:
    """One module named by one import statement."""

    source: str
    path: str
    line: int
    target: str
    kind: str


@dataclass(frozen=True)
class Rule:
    """What the modules of ``layer`` may import of the project and beyond.

    ``forbidden`` lists module prefixes the layer never imports; ``only``,
    when set, lists the project's modules it may import besides its own.
    """

    layer: str
    says: str
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None


RULES = (
    Rule(
        "rtgateway.wire",
        "wire imports nothing of the project and no Twisted",
        forbidden=("twisted", "autobahn", "txaio"),
        only=(),
    ),
    Rule(
        "rtgateway.backends",
        "backends import neither the routing layer, the components nor the gateway",
        forbidden=("rtgateway.routing", "rtgateway.components", "rtgateway.gateway"),
    ),
    Rule(
        "rtgateway.routing",
        "the routing layer imports neither the components nor the gateway",
        forbidden=("rtgateway.components", "rtgateway.gateway"),
    ),
    Rule(
        "rtgateway.components",
        "components never touch the gateway's frames (rtgateway.gateway)",
        forbidden=("rtgateway.gateway",),
    ),
    Rule(
        "rtgateway.state",
        "state imports nothing of the project but wire",
        only=("rtgateway.wire",),
    ),
    Rule(
        "rtgateway.client",
        "the client imports of the server only wire and the state mirror and view hash",
        only=("rtgateway.wire", "rtgateway.state.mirror", "rtgateway.state.viewhash"),
    ),
)


def within(name: str, prefix: str) -> bool:
    """Whether module ``name`` is ``prefix`` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def find_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name to file, for every module of ``packages``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(
    body: Iterable[ast.stmt], kind: str
) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement below ``body``, with the kind it is."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, kind
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(node.body, DEFERRED)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            inner = DEFERRED if kind == DEFERRED else TYPING
            yield from _statements(node.body, inner)
            yield from _statements(node.orelse, kind)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _statements(
                        (c for c in children if isinstance(c, ast.AST)), kind
                    )


def read_imports(
    name: str, path: Path, known: Mapping[str, Path], root: Path = ROOT
) -> list[Import]:
    """The modules ``name`` (at ``path``) imports, resolved to dotted names."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    where = str(path.relative_to(root))
    found = []
    for node, kind in _statements(tree.body, RUNTIME):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # ``from package import module`` names the module; any other
            # name is the package's (or module's) own.
            named = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in named if t in known]
            if len(targets) < len(named):
                targets.insert(0, base)
        found.extend(Import(name, where, node.lineno, t, kind) for t in targets)
    return found


def all_imports(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> list[Import]:
    known = find_modules(root, packages)
    return [
        found
        for name, path in known.items()
        for found in read_imports(name, path, known, root)
    ]


def _project(name: str) -> bool:
    return within(name, "rtgateway")


def rule_violations(imports: Iterable[Import], rules=RULES) -> list[str]:
    """One line per import that breaks a rule: where, what, and the rule."""
    problems = []
    for found in imports:
        for rule in rules:
            if not within(found.source, rule.layer):
                continue
            bad = any(within(found.target, p) for p in rule.forbidden)
            if rule.only is not None and _project(found.target):
                bad = bad or not (
                    within(found.target, rule.layer)
                    or any(within(found.target, p) for p in rule.only)
                )
            if bad:
                problems.append(
                    f"{found.path}:{found.line}: {found.source} imports"
                    f" {found.target}, but {rule.says}"
                )
    return problems


def import_graph(
    imports: Iterable[Import], known: Iterable[str]
) -> dict[str, dict[str, Import]]:
    """Module to the modules loading it loads first, each with its import.

    Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first,
    unless they are packages of the importing module itself (then they are
    already being loaded): those are edges too.
    """
    modules = set(known)
    graph: dict[str, dict[str, Import]] = {name: {} for name in modules}
    for found in imports:
        if found.kind == DEFERRED or found.target not in modules:
            continue
        edges = graph[found.source]
        edges.setdefault(found.target, found)
        if found.kind != RUNTIME:
            continue
        parts = found.target.split(".")
        for size in range(1, len(parts)):
            parent = ".".join(parts[:size])
            if parent in modules and not within(found.source, parent):
                edges.setdefault(parent, found)
    return graph


def cycles(graph: Mapping[str, Mapping[str, Import]]) -> list[list[str]]:
    """One cycle (as a closed path) through each strongly connected part."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1 or node in graph[node]:
                parts.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_closed_path(graph, part) for part in parts]


def _closed_path(graph: Mapping[str, Mapping[str, Import]], part: list[str]) -> list:
    """A shortest path from the part's first module back to itself."""
    members = set(part)
    start = part[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt not in members:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {part}")


def describe_cycle(graph: Mapping[str, Mapping[str, Import]], path: list) -> str:
    steps = []
    for here, there in itertools.pairwise(path):
        found = graph[here][there]
        via = "" if found.target == there else f" (through {found.target})"
        steps.append(f"{found.path}:{found.line} -> {there}{via}")
    return f"{path[0]}: " + ", ".join(steps)


# -- the rules on this tree --------------------------------------------------------


@functools.cache
def tree_imports() -> tuple[Import, ...]:
    return tuple(all_imports())


def _lines(problems: list[str]) -> str:
    return "\n" + "\n".join(problems)


def test_every_layer_the_rules_name_exists():
    """A renamed or moved layer cannot leave its rule checking nothing."""
    known = find_modules(ROOT, PACKAGES)
    missing = [
        rule.layer
        for rule in RULES
        if not any(within(name, rule.layer) for name in known)
    ]
    assert missing == []


@pytest.mark.parametrize("rule", RULES, ids=[rule.layer for rule in RULES])
def test_layer_imports_follow_design(rule):
    """No module of the layer imports what DESIGN.md's rules forbid it."""
    problems = rule_violations(tree_imports(), [rule])
    assert not problems, _lines(problems)


def test_no_import_cycles():
    """No module of rtgateway or bench is, through its imports, its own import."""
    known = find_modules(ROOT, PACKAGES)
    graph = import_graph(tree_imports(), known)
    found = [describe_cycle(graph, path) for path in cycles(graph)]
    assert not found, _lines(found)


def test_setup_cfg_lists_every_package():
    """The wheel holds every package of rtgateway (setup.cfg lists them)."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    listed = set(setup["options"]["packages"].split())
    on_disk = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "rtgateway").rglob("__init__.py")
    }
    assert on_disk - listed == set()


# -- the checks themselves ---------------------------------------------------------


def _tree(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _violations(root: Path, files: Mapping[str, str]) -> list[str]:
    _tree(root, files)
    return rule_violations(all_imports(root, ["rtgateway"]))


def test_a_forbidden_import_is_reported_with_its_line(tmp_path):
    """A backend naming the routing layer, even in a function, is reported."""
    problems = _violations(
        tmp_path,
        {
            "rtgateway/__init__.py": "",
            "rtgateway/backends/__init__.py": "",
            "rtgateway/backends/memory.py": (
                "import os\n\n\ndef f():\n"
                "    from rtgateway.routing.broker import Broker\n"
            ),
            "rtgateway/routing/__init__.py": "",
            "rtgateway/routing/broker.py": "",
        },
    )
    assert problems == [
        "rtgateway/backends/memory.py:5: rtgateway.backends.memory imports"
        " rtgateway.routing.broker, but backends import neither the routing"
        " layer, the components nor the gateway"
    ]


def test_only_rules_refuse_other_project_modules(tmp_path):
    """The client may use the state mirror, not the engine; wire no Twisted."""
    problems = _violations(
        tmp_path,
        {
            "rtgateway/__init__.py": "",
            "rtgateway/client/core.py": (
                "from rtgateway.state.mirror import Mirror\n"
                "from rtgateway.state import engine\n"
                "import twisted\n"
            ),
            "rtgateway/state/__init__.py": "",
            "rtgateway/state/engine.py": "from rtgateway.wire import errors\n",
            "rtgateway/state/mirror.py": "from . import viewhash\n",
            "rtgateway/state/viewhash.py": "",
            "rtgateway/wire/__init__.py": "",
            "rtgateway/wire/errors.py": "",
            "rtgateway/wire/codecs.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from twisted.internet import reactor\n"
                "from ..state import engine\n"
            ),
        },
    )
    assert [p.split(": ", 1)[1].split(", but")[0] for p in problems] == [
        "rtgateway.client.core imports rtgateway.state.engine",
        "rtgateway.wire.codecs imports twisted.internet",
        "rtgateway.wire.codecs imports rtgateway.state.engine",
    ]


def test_cycles_of_types_and_of_packages_are_found(tmp_path):
    """A TYPE_CHECKING import closes a cycle; one in a function does not; a
    package whose ``__init__`` imports its modules is a step of its own."""
    _tree(
        tmp_path,
        {
            "rtgateway/__init__.py": "",
            "rtgateway/a.py": "from rtgateway.b import x\n",
            "rtgateway/b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from rtgateway import a\n"
            ),
            "rtgateway/c.py": "def f():\n    import rtgateway.d\n",
            "rtgateway/d.py": "import rtgateway.c\n",
            "rtgateway/p/__init__.py": "from rtgateway.p.inner import y\n",
            "rtgateway/p/inner.py": "from rtgateway.q import z\n",
            "rtgateway/q.py": "from rtgateway.p.other import w\n",
            "rtgateway/p/other.py": "",
        },
    )
    known = find_modules(tmp_path, ["rtgateway"])
    graph = import_graph(all_imports(tmp_path, ["rtgateway"]), known)
    assert cycles(graph) == [
        ["rtgateway.a", "rtgateway.b", "rtgateway.a"],
        ["rtgateway.p", "rtgateway.p.inner", "rtgateway.q", "rtgateway.p"],
    ]
    assert describe_cycle(graph, cycles(graph)[1]) == (
        "rtgateway.p: rtgateway/p/__init__.py:1 -> rtgateway.p.inner,"
        " rtgateway/p/inner.py:1 -> rtgateway.q,"
        " rtgateway/q.py:1 -> rtgateway.p (through rtgateway.p.other)"
    )
