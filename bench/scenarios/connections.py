"""Scenario ``connections``: what holding many players costs the gateway.

For each size N (1,000 and 10,000 by default), on a fresh server process
each time so that no run inherits another's memory:

- open N authenticated connections (a connection counts once the gateway's
  ``session.welcome`` arrived; the baseline sends none, so there it counts
  at the handshake): the time to open them all and connections per second,
  with the CPU each side spent per connection opened;
- the gateway's resident memory per connection, (RSS after - RSS before) / N;
- the gateway's CPU while the connections idle with heartbeats on: CPU
  seconds per second over an idle window, and per heartbeat answered. The
  heartbeat interval is set to the window's length (10 s, shorter than the
  15 s default), so every connection is pinged once in any window; the
  per-heartbeat figure carries over to any interval. A longer interval
  would leave the window without pings; a much shorter one would put
  heartbeats of the first connections into the opening figures.

The baseline (raw Autobahn, no auth, no session, no heartbeats) gives the
stack's own memory per idle connection and opening rate. ``--max`` instead
climbs in steps on one gateway until it refuses or errs, passes a memory
limit, or nears the open-files limit.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from bench.baseline import BaselineProcess
from bench.gateway import BenchGateway
from bench.loadgen import MAX_CONNECTIONS_PER_PROCESS, LoadGenerators, plans
from bench.procstat import cpu_seconds, open_files, open_files_limit, rss_bytes
from bench.report import case_result, number

SUMMARY = (
    "open N authenticated connections: rate, gateway RSS per connection, "
    "idle CPU with heartbeats; --max climbs to the limit"
)
DEFAULT_SIZES = (1000, 10000)
DEFAULT_IDLE_S = 10.0
#: The gateway's default interval, to which the idle figure is scaled.
DEFAULT_HEARTBEAT_S = 15.0
#: Files kept free under the open-files limit in --max mode: the gateway
#: also needs its log, its listener and epoll, and a step must not fail on
#: the limit itself.
FILE_HEADROOM = 1000
#: Time for opening connections, per thousand, before giving up.
OPEN_S_PER_THOUSAND = 30.0

FIGURES = {
    "open_per_s": "connections/s",
    "open_s": "time to open all s",
    "rss_per_conn_kib": "RSS per conn KiB",
    "rss_after_mib": "RSS after MiB",
    "server_cpu_us_per_open": "server CPU us/open",
    "load_cpu_us_per_open": "load CPU us/open",
    "idle_cpu_cores": "idle server CPU cores",
    "heartbeat_cpu_us": "server CPU us/heartbeat",
    "idle_load_cpu_cores": "idle load CPU cores",
    "heartbeats": "heartbeats answered",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        default=None,
        help="comma-separated connection counts (default: 1000,10000)",
    )
    parser.add_argument(
        "--max",
        action="store_true",
        help="climb in steps on one gateway until a limit is reached",
    )
    parser.add_argument(
        "--step", type=int, default=2000, help="connections per --max step"
    )
    parser.add_argument(
        "--max-rss-mb",
        type=float,
        default=8192.0,
        help="--max stops once the gateway's RSS passes this (MiB)",
    )


def _open(load: LoadGenerators, count: int) -> dict[str, float]:
    """Open the group's connections; opening figures, or RuntimeError."""
    replies = load.command(
        "open",
        OPEN_S_PER_THOUSAND * (count / 1000 + 1) + 30.0,
        timeout=OPEN_S_PER_THOUSAND * (count / 1000 + 1),
    )
    failed = sum(reply["failed"] for reply in replies)
    if failed:
        errors: dict[str, int] = {}
        for reply in replies:
            for reason, n in reply["errors"].items():
                errors[reason] = errors.get(reason, 0) + n
        raise RuntimeError(f"{failed} of {count} connections failed: {errors}")
    took = max(r["finished"] for r in replies) - min(r["started"] for r in replies)
    return {
        "open_s": took,
        "open_per_s": count / took,
        "load_cpu_us_per_open": sum(r["cpu_s"] for r in replies) / count * 1e6,
    }


def measure(
    target: Any, *, count: int, load_procs: int, idle_s: float
) -> dict[str, float]:
    """Open ``count`` connections to a started server; idle them if it pings."""
    group = plans(
        target.url,
        encoding="json",
        connections=count,
        processes=load_procs,
        secret=target.secret,
        lifetime_s=OPEN_S_PER_THOUSAND * (count / 1000 + 1) + idle_s + 120.0,
    )
    with LoadGenerators(group) as load:
        rss_before = rss_bytes(target.pid)
        cpu_before = cpu_seconds(target.pid)
        figures = _open(load, count)
        figures["server_cpu_us_per_open"] = (
            (cpu_seconds(target.pid) - cpu_before) / count * 1e6
        )
        time.sleep(1.0)  # let the last writes and log lines settle
        rss_after = rss_bytes(target.pid)
        figures["rss_per_conn_kib"] = (rss_after - rss_before) / count / 1024
        figures["rss_after_mib"] = rss_after / 2**20
        figures["processes"] = len(group)
        if target.secret is not None:  # the gateway: it sends heartbeats
            figures |= _idle(load, target, idle_s)
    return figures


def _idle(load: LoadGenerators, target: Any, seconds: float) -> dict[str, float]:
    """CPU of both sides while every connection only answers heartbeats."""
    cpu_before = cpu_seconds(target.pid)
    began = time.monotonic()
    replies = load.command("idle", seconds + 30.0, seconds=seconds)
    wall = time.monotonic() - began
    server_cpu = cpu_seconds(target.pid) - cpu_before
    pings = sum(reply["pings"] for reply in replies)
    if not pings:
        raise RuntimeError("no heartbeat reached the clients in the idle window")
    return {
        "idle_cpu_cores": server_cpu / wall,
        "heartbeat_cpu_us": server_cpu / pings * 1e6,
        "idle_load_cpu_cores": sum(reply["cpu_s"] for reply in replies) / wall,
        "heartbeats": pings,
    }


def _sizes(options: argparse.Namespace) -> list[int]:
    if options.sizes:
        return [int(size) for size in options.sizes.split(",")]
    return [20] if options.tiny else list(DEFAULT_SIZES)


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every size, gateway then baseline, each on a fresh process, ``--runs`` times."""
    if options.max:
        return _climb(options, workdir)
    idle_s = options.duration or (1.0 if options.tiny else DEFAULT_IDLE_S)
    # Tiny runs open in milliseconds: two pings per window keep one inside.
    heartbeat_s = idle_s / 2 if options.tiny else idle_s
    load_procs = options.load_procs or 1
    sizes = _sizes(options)
    runs = {size: {"gateway": [], "baseline": []} for size in sizes}
    for run_number in range(options.runs):
        for size in sizes:
            print(
                f"run {run_number + 1}/{options.runs}: {size} connections", flush=True
            )
            gateway = BenchGateway(
                workdir,
                reactor=options.reactor,
                overrides={"heartbeat": {"interval_s": heartbeat_s}},
            )
            baseline = BaselineProcess("echo", options.reactor)
            for name, target in (("gateway", gateway), ("baseline", baseline)):
                try:
                    target.start()
                    runs[size][name].append(
                        measure(
                            target,
                            count=size,
                            load_procs=load_procs,
                            idle_s=idle_s,
                        )
                    )
                finally:
                    target.stop()
    cases = [
        case_result(
            f"{size:,} connections",
            FIGURES,
            runs[size],
            params={"connections": size, "idle_s": idle_s, "heartbeat_s": heartbeat_s},
        )
        for size in sizes
    ]
    return {"cases": cases, "notes": _notes(cases, options.reactor)}


def _notes(cases: list[dict[str, Any]], reactor: str) -> list[str]:
    params = cases[0]["params"]
    notes = [
        f"heartbeat every {params['heartbeat_s']:g} s during a "
        f"{params['idle_s']:g} s idle window; reactor {reactor}; at most "
        f"{MAX_CONNECTIONS_PER_PROCESS:,} connections per load process "
        f"({open_files_limit():,} open files allowed per process)"
    ]
    for case in cases:
        size = case["params"]["connections"]
        memory = case["ratio"].get("gateway", {}).get("rss_per_conn_kib")
        if memory is not None:
            verdict = "meets" if memory <= 1.5 else "misses"
            notes.append(
                f"{size:,} connections: gateway RSS per connection is "
                f"{memory:.2f} x the baseline's ({verdict} the 1.5 x target)"
            )
        heartbeat = case["summary"]["gateway"].get("heartbeat_cpu_us")
        if heartbeat is not None:
            cores = size / DEFAULT_HEARTBEAT_S * heartbeat["median"] / 1e6
            notes.append(
                f"{size:,} connections: at the default {DEFAULT_HEARTBEAT_S:g} s "
                f"heartbeat, idle CPU would be about {cores:.3f} cores"
            )
    return notes


def _climb(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """--max: add ``--step`` connections at a time until a limit says stop."""
    gateway = BenchGateway(workdir, reactor=options.reactor)
    limit = open_files_limit()
    budget = limit - FILE_HEADROOM
    groups: list[LoadGenerators] = []
    steps: dict[str, list[dict[str, float]]] = {}
    total = 0
    reason = "step limit"
    try:
        gateway.start()
        rss_start = rss_bytes(gateway.pid)
        for _ in range(1000):
            room = budget - open_files(gateway.pid)
            step = min(options.step, room)
            if step <= 0:
                held = open_files(gateway.pid)
                reason = (
                    f"open-files limit near: the gateway holds {held:,} files "
                    f"(budget {budget:,})"
                )
                break
            print(f"climbing: {total:,} + {step:,} connections", flush=True)
            load = LoadGenerators(
                plans(
                    gateway.url,
                    encoding="json",
                    connections=step,
                    processes=math.ceil(step / MAX_CONNECTIONS_PER_PROCESS),
                    secret=gateway.secret,
                    lifetime_s=3600.0,
                    first_player=total,
                )
            )
            groups.append(load)
            cpu_before = cpu_seconds(gateway.pid)
            try:
                figures = _open(load, step)
            except RuntimeError as error:
                reason = f"refused or failed at {total + step:,}: {error}"
                break
            total += step
            rss = rss_bytes(gateway.pid)
            figures |= {
                "server_cpu_us_per_open": (cpu_seconds(gateway.pid) - cpu_before)
                / step
                * 1e6,
                "rss_after_mib": rss / 2**20,
                "rss_per_conn_kib": (rss - rss_start) / total / 1024,
                "gateway_files": float(open_files(gateway.pid)),
            }
            steps[f"{total:,} open"] = [figures]
            if rss / 2**20 > options.max_rss_mb:
                reason = f"RSS {number(rss / 2**20)} MiB passed --max-rss-mb"
                break
    finally:
        for load in groups:
            load.close()
        gateway.stop()
    figures = {
        key: label for key, label in FIGURES.items() if key in ("open_per_s", "open_s")
    } | {
        "rss_after_mib": "RSS after MiB",
        "rss_per_conn_kib": "RSS per conn KiB (cumulative)",
        "server_cpu_us_per_open": "server CPU us/open",
        "load_cpu_us_per_open": "load CPU us/open",
        "gateway_files": "gateway open files",
    }
    cases = [
        case_result(f"step to {name}", figures, {"gateway": runs}, reference=None)
        for name, runs in steps.items()
    ]
    return {
        "runs": 1,
        "cases": cases,
        "max_connections": total,
        "stopped_because": reason,
        "notes": [
            f"reached {total:,} connections; stopped: {reason}",
            f"clients spread over load processes of at most "
            f"{MAX_CONNECTIONS_PER_PROCESS:,} connections each; the gateway is "
            f"kept under {budget:,} open files (limit {limit:,} per "
            "process)",
        ],
    }
