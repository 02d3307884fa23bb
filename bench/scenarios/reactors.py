"""Scenario ``reactors``: which Twisted reactor should run the gateway.

The ``rpc`` pipelined case (one connection, 100 requests in flight, JSON)
on each reactor in turn: Twisted's epoll reactor, its asyncio reactor, and
the asyncio reactor on a uvloop event loop when uvloop is installed. The
baseline runs on the same reactor each time, so the gateway/baseline ratio
says how much of a difference is the stack's and how much the gateway's;
the notes compare each reactor's gateway throughput with epoll's.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from bench.baseline import BaselineProcess
from bench.gateway import BenchGateway
from bench.reactors import REACTORS
from bench.report import case_result
from bench.scenarios.rpc import DEFAULT_DURATION, figures_of, measure, shapes

SUMMARY = "the rpc pipelined case on the epoll, asyncio and uvloop reactors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common ones (``--reactor`` is ignored here)."""


def available() -> list[str]:
    """The reactors this machine can run (uvloop only when installed)."""
    return [
        name
        for name in REACTORS
        if name != "uvloop" or importlib.util.find_spec("uvloop") is not None
    ]


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The pipelined case on every reactor, gateway then baseline, ``--runs`` times."""
    duration = options.duration or (0.3 if options.tiny else DEFAULT_DURATION)
    load_procs = options.load_procs or 1
    shape = shapes(options.tiny)[1]
    reactors = available()
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {"gateway": [], "baseline": []} for name in reactors
    }
    for number in range(options.runs):
        for reactor in reactors:
            print(f"run {number + 1}/{options.runs}: {reactor}", flush=True)
            gateway = BenchGateway(workdir, reactor=reactor)
            baseline = BaselineProcess("echo", reactor)
            try:
                gateway.start()
                baseline.start()
                for name, target in (("gateway", gateway), ("baseline", baseline)):
                    runs[reactor][name].append(
                        measure(
                            target,
                            encoding="json",
                            shape=shape,
                            duration=duration,
                            load_procs=load_procs,
                        )
                    )
            finally:
                gateway.stop()
                baseline.stop()
    cases = [
        case_result(
            f"json {shape.name}, {reactor}",
            figures_of(shape),
            runs[reactor],
            params={"reactor": reactor, "duration_s": duration},
        )
        for reactor in reactors
    ]
    epoll = cases[0]["summary"]["gateway"]["messages_per_s"]["median"]
    notes = [
        f"gateway messages/s on {case['params']['reactor']}: "
        f"{case['summary']['gateway']['messages_per_s']['median'] / epoll:.2f} x epoll"
        for case in cases[1:]
    ]
    if "uvloop" not in reactors:
        notes.append("uvloop is not installed: its reactor was not measured")
    return {"cases": cases, "notes": notes}
