"""The ``bench`` extra brings every package the benchmarks import.

docs/benchmarks.rst runs ``python -m bench`` from the README's virtualenv
after ``pip install .[bench]``; whatever ``bench/`` imports must come with
the package or with that extra.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN = {"bench", "rtgateway"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: str) -> set[str]:
    names = set()
    for line in lines.splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match:
            names.add(normalized(match.group(1)))
    return names


def imported_modules() -> set[str]:
    """Top-level names of the absolute imports anywhere under bench/."""
    modules = set()
    for path in (ROOT / "bench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - OWN


def test_every_module_bench_imports_is_installed_by_the_bench_extra():
    """Third-party imports of bench/ are in install_requires or the bench extra."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    provided = requirement_names(setup["options"]["install_requires"])
    provided |= requirement_names(setup["options.extras_require"].get("bench", ""))
    distributions = importlib.metadata.packages_distributions()
    missing = {
        module: names
        for module in imported_modules()
        # A module not installed here is named as its distribution.
        if not (names := {normalized(d) for d in distributions.get(module, [module])})
        & provided
    }
    assert not missing, f"bench imports what nothing installs: {missing}"
