"""The registry of scenarios: the one place a new scenario is added.

A scenario is a module with ``SUMMARY`` (one line for ``--help``),
``add_arguments(parser)`` for its own options, and ``run(options)``, which
returns ``{"cases": [...], "notes": [...]}`` built with
:func:`bench.report.case_result`. The command line, the table and the JSON
file come for free.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SCENARIOS = {
    "rpc": "bench.scenarios.rpc",
    "connections": "bench.scenarios.connections",
    "reactors": "bench.scenarios.reactors",
    "codecs": "bench.scenarios.codecs",
    "fanout": "bench.scenarios.fanout",
    "resume": "bench.scenarios.resume",
    "presence": "bench.scenarios.presence",
    "state": "bench.scenarios.state",
    "soak": "bench.scenarios.soak",
    "client": "bench.scenarios.client",
    "services": "bench.scenarios.services",
    "balance": "bench.scenarios.balance",
    "trace": "bench.scenarios.trace",
}


def load(name: str) -> ModuleType:
    """The module of scenario ``name``."""
    return importlib.import_module(SCENARIOS[name])
