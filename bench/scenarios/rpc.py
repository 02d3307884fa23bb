"""Scenario ``rpc``: ``sys.ping`` round trips through the gateway.

Three shapes of load, each in JSON and in CBOR, against the gateway and
against the baseline's raw Autobahn echo (which sends the request back; the
load generator takes it for the response, matching by position):

- sequential: one connection, one request at a time: the latency of one
  call and the round trips per second that latency allows;
- pipelined: one connection with 100 requests outstanding: how many
  messages one connection can push through the server;
- concurrent: 100 connections with 10 outstanding each: the server's
  aggregate throughput over many connections.

``sys.ping`` is the cheapest method there is, so the figures are the
gateway's per-message cost (framing, decoding, JSON-RPC, dispatch,
metrics, encoding) with nothing of any component's work in them.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.baseline import BaselineProcess
from bench.gateway import BenchGateway
from bench.loadgen import DRAIN_S, LoadGenerators, client_loop, plans
from bench.procstat import cpu_seconds
from bench.report import case_result, every_run, percentile

SUMMARY = (
    "sys.ping round trips (sequential, pipelined, 100 connections) in JSON "
    "and CBOR, against a raw Autobahn echo"
)
DEFAULT_DURATION = 5.0
ENCODINGS = ("json", "cbor")
#: A count bound per measurement that no server here can reach in time.
MAX_MESSAGES_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class Shape:
    """One shape of load: connections, requests in flight, what to report."""

    name: str
    connections: int
    window: int
    throughput_label: str
    percentiles: tuple[float, ...]


def shapes(tiny: bool) -> list[Shape]:
    """The three shapes; ``tiny`` shrinks the concurrent one for smoke tests."""
    return [
        Shape("sequential, 1 conn", 1, 1, "round trips/s", (0.5, 0.99, 0.999)),
        Shape("pipelined, 1 conn, window 100", 1, 100, "messages/s", (0.5, 0.99)),
        Shape(
            "100 conns, window 10" if not tiny else "4 conns, window 10",
            4 if tiny else 100,
            10,
            "messages/s",
            (0.5, 0.99),
        ),
    ]


def figures_of(shape: Shape) -> dict[str, str]:
    """The figures a case of ``shape`` reports, keys to printed labels."""
    figures = {"messages_per_s": shape.throughput_label}
    for fraction in shape.percentiles:
        figures[_latency_key(fraction)] = f"latency p{fraction * 100:g} ms"
    figures |= {
        "server_cpu_us_per_msg": "server CPU us/msg",
        "load_cpu_us_per_msg": "load CPU us/msg",
        "server_cpu_cores": "server CPU cores",
        "load_cpu_cores": "load CPU cores",
    }
    return figures


def _latency_key(fraction: float) -> str:
    return f"latency_p{fraction * 100:g}_ms".replace(".", "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common ones."""


def measure(
    target: Any,
    *,
    encoding: str,
    shape: Shape,
    duration: float,
    load_procs: int,
    method: str = "sys.ping",
    around: Callable[[], AbstractContextManager[Any]] | None = None,
) -> dict[str, float]:
    """One measurement of ``shape`` against ``target``: every figure of it.

    ``method`` is what the connections call (``sys.ping`` unless a scenario
    measures a routed procedure). ``around``, if given, is entered once the
    connections are open and left after the measured window (a scenario
    tracing a connection starts and stops the trace there).

    Fresh load processes open the connections, warm up for a quarter of
    the duration (at most a second), then run the measured window while
    the server's CPU time is read from /proc around it.
    """
    lifetime = 3 * duration + 120.0
    group = plans(
        target.url,
        encoding=encoding,
        connections=shape.connections,
        processes=min(load_procs, shape.connections),
        secret=target.secret,
        lifetime_s=lifetime,
    )
    ping = {"window": shape.window, "method": method}
    with LoadGenerators(group) as load, contextlib.ExitStack() as stack:
        opened = load.command("open", 60.0, timeout=30.0)
        failed = sum(reply["failed"] for reply in opened)
        if failed:
            errors = [reply["errors"] for reply in opened if reply["errors"]]
            raise RuntimeError(f"{failed} connections failed to open: {errors}")
        if around is not None:
            stack.enter_context(around())
        warmup = min(1.0, duration / 4)
        load.command(
            "ping",
            warmup + DRAIN_S + 30.0,
            **ping,
            duration=warmup,
            max_messages=int(warmup * MAX_MESSAGES_PER_SECOND),
        )
        server_before = cpu_seconds(target.pid)
        began = time.monotonic()
        replies = load.command(
            "ping",
            duration + DRAIN_S + 30.0,
            **ping,
            duration=duration,
            max_messages=int(duration * MAX_MESSAGES_PER_SECOND),
        )
        wall = time.monotonic() - began
        server_cpu = cpu_seconds(target.pid) - server_before
    received = sum(reply["received"] for reply in replies)
    answered = sum(reply["answered"] for reply in replies) or 1
    load_cpu = sum(reply["cpu_s"] for reply in replies)
    latencies = sorted(x for reply in replies for x in reply["latencies"])
    figures = {
        "messages_per_s": received / max(reply["elapsed"] for reply in replies),
        "server_cpu_us_per_msg": server_cpu / answered * 1e6,
        "load_cpu_us_per_msg": load_cpu / answered * 1e6,
        "server_cpu_cores": server_cpu / wall,
        "load_cpu_cores": load_cpu / wall,
        "messages": received,
        "errors": sum(reply["errors"] for reply in replies),
    }
    for fraction in shape.percentiles:
        figures[_latency_key(fraction)] = percentile(latencies, fraction) * 1000
    return figures


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every shape and encoding, gateway then baseline, ``--runs`` times."""
    duration = options.duration or (0.3 if options.tiny else DEFAULT_DURATION)
    load_procs = options.load_procs or 1
    gateway = BenchGateway(workdir, reactor=options.reactor).start()
    baseline = BaselineProcess("echo", options.reactor)
    try:
        baseline.start()
        targets = {"gateway": gateway, "baseline": baseline}
        cases = [
            (shape, encoding)
            for shape in shapes(options.tiny)
            for encoding in ENCODINGS
        ]
        runs: dict[tuple[Shape, str], dict[str, list[dict[str, float]]]] = {
            case: {name: [] for name in targets} for case in cases
        }
        for number in range(options.runs):
            for shape, encoding in cases:
                for name, target in targets.items():
                    print(
                        f"run {number + 1}/{options.runs}: {encoding} {shape.name}, "
                        f"{name}",
                        flush=True,
                    )
                    runs[shape, encoding][name].append(
                        measure(
                            target,
                            encoding=encoding,
                            shape=shape,
                            duration=duration,
                            load_procs=load_procs,
                        )
                    )
    finally:
        gateway.stop()
        baseline.stop()
    results = [
        case_result(
            f"{encoding} {shape.name}",
            figures_of(shape),
            runs[shape, encoding],
            params={
                "encoding": encoding,
                "connections": shape.connections,
                "window": shape.window,
                "duration_s": duration,
                "load_procs": min(load_procs, shape.connections),
            },
        )
        for shape, encoding in cases
    ]
    errors = sum(run["errors"] for run in every_run(results))
    return {
        "cases": results,
        "notes": [
            f"reactor {options.reactor} on both servers; {load_procs} load "
            f"process(es), websockets sans-io client on {client_loop()}; "
            f"{duration:g} s "
            "per measurement after a warm-up",
            f"{errors} wrong or missing responses in all runs",
        ],
    }
