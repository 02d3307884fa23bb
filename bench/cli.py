"""The command line: common options, one subcommand per scenario, the output.

Options every scenario shares are defined here once; a scenario adds its
own in ``add_arguments``. The result is printed as a table and saved as
JSON (``bench/results/`` by default, which git ignores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.loadgen import LoadError
from bench.machine import describe, one_line
from bench.procstat import raise_open_files_limit
from bench.reactors import REACTORS
from bench.report import render, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs", type=int, default=3, help="repetitions; the median is reported"
    )
    parser.add_argument(
        "--load-procs",
        type=int,
        default=None,
        help="load generator processes (default: the scenario's)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per measurement (default: the scenario's)",
    )
    parser.add_argument(
        "--reactor",
        choices=REACTORS,
        default="epoll",
        help="Twisted reactor of the gateway and the baseline (default: epoll)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="smallest sizes, for the smoke test"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the results "
        "(default: bench/results/<scenario>-<time>.json)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="rtgateway benchmarks; run from the repository root.",
    )
    commands = parser.add_subparsers(dest="scenario", required=True)
    for name in scenarios.SCENARIOS:
        module = scenarios.load(name)
        sub = commands.add_parser(name, help=module.SUMMARY, description=module.SUMMARY)
        _common_options(sub)
        module.add_arguments(sub)
    return parser


def _jsonable(options: argparse.Namespace) -> dict[str, Any]:
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(options).items()
    }


def main(argv: list[str] | None = None) -> int:
    """Run one scenario; 0 on success, 1 when the benchmark itself failed."""
    options = build_parser().parse_args(argv)
    if options.runs < 1:
        print("bench: --runs must be at least 1", file=sys.stderr)
        return 2
    module = scenarios.load(options.scenario)
    raise_open_files_limit()
    machine = describe()
    print(f"{options.scenario} on {one_line(machine)}", flush=True)
    started = datetime.now(UTC)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rtgw-bench-") as workdir:
        try:
            body = module.run(options, Path(workdir))
        except (LoadError, RuntimeError) as error:
            print(f"bench {options.scenario}: {error}", file=sys.stderr)
            return 1
    result = {
        "scenario": options.scenario,
        "started_at": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - began, 1),
        "runs": options.runs,
        "options": _jsonable(options),
        "machine": machine,
        **body,
    }
    print(render(result))
    stamp = started.strftime("%Y%m%d-%H%M%S")
    path = write_json(
        options.json or RESULTS / f"{options.scenario}-{stamp}.json", result
    )
    print(f"results written to {path}")
    return 0
