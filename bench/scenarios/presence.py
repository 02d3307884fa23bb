"""Scenario ``presence``: how fast a change reaches the watchers, and what
listing a crowded zone costs.

Changes (``W watchers``): W players (1,000 by default) watch one player
(``presence.watch``), who calls ``presence.set`` in a closed loop, the next
call when every watcher has the previous ``presence.changed``
(:func:`bench.workloads.closed_loop`). Each call alternates the status
(away, online) and carries its sequence number and sending time in
``activity``; latency is from sending ``presence.set`` to each watcher's
receipt of the change. Targets: one gateway on the memory backend; two
gateways sharing one Redis, the watchers split between them and the player
on the first; and, for reference, the raw Autobahn ``broadcast`` baseline
sending a message of the same shape and size to the same number of
clients (with ``broadcast-raw``, the ceiling).

Zone (``zone of Z``): Z players (10,000 by default) connect for real, each
with its own session, spread over load processes (at most 8,000
connections each), and each sets the same zone. One of them then times the
first page of ``presence.zone`` (``limit`` 100), called again and again,
and walks every page from the first to the last, checking that the walk
lists every player once, in order. On one gateway, on memory and on
Redis. Populating the zone this way takes a while (opening 10,000
connections is most of this scenario's time), but it measures the zone as
the gateway builds it: no store is written behind its back.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from bench import topics
from bench.baseline import BaselineProcess
from bench.gateway import BenchCluster
from bench.loadgen import MAX_CONNECTIONS_PER_PROCESS, LoadGenerators, plans
from bench.report import case_result, every_run, percentile
from bench.scenarios.fanout import measure as closed_loops

SUMMARY = (
    "presence.changed latency to W watchers (one gateway, two on Redis, vs "
    "raw broadcast) and presence.zone pages on a zone of 10,000 players"
)
DEFAULT_WATCHERS = 1000
DEFAULT_ZONE = 10000
DEFAULT_DURATION = 5.0
PAGE_LIMIT = 100
#: Calls of the first page timed per run, and walks through every page.
PAGE_CALLS = 50
WALKS = 5
ZONE = "crowded"
#: Time for opening connections and setting the zone, per thousand.
SETUP_S_PER_THOUSAND = 30.0

CHANGE_FIGURES = {
    "publications_per_s": "changes/s",
    "deliveries_per_s": "deliveries/s",
    "latency_p50_ms": "latency p50 ms",
    "latency_p99_ms": "latency p99 ms",
    "latency_max_ms": "latency max ms",
    "server_cpu_us_per_delivery": "server CPU us/delivery",
    "redis_cpu_us_per_delivery": "redis CPU us/delivery",
    "load_cpu_us_per_delivery": "load CPU us/delivery",
    "server_cpu_cores": "server CPU cores",
    "load_cpu_cores": "load CPU cores",
}
CHANGE_TARGETS = ("gateway", "2 gateways, redis", "broadcast", "broadcast-raw")
ZONE_FIGURES = {
    "page_p50_ms": "first page p50 ms",
    "page_p99_ms": "first page p99 ms",
    "walk_ms": "walk of all pages ms",
    "walk_page_ms": "walk ms per page",
    "pages": "pages walked",
    "server_cpu_us_per_page": "gateway CPU us/page",
    "redis_cpu_us_per_page": "redis CPU us/page",
    "populate_s": "open and join s",
}
ZONE_TARGETS = ("memory", "redis")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watchers",
        type=int,
        default=None,
        help=f"watchers of the changing player (default {DEFAULT_WATCHERS:,})",
    )
    parser.add_argument(
        "--zone-size",
        type=int,
        default=None,
        help=f"players in the listed zone (default {DEFAULT_ZONE:,})",
    )
    parser.add_argument(
        "--skip",
        choices=("changes", "zone"),
        default=None,
        help="leave out one part",
    )


def measure_changes(
    target: Any, urls: tuple[str, ...], *, watchers: int, duration: float
) -> dict[str, float]:
    """Connection 0 changes its presence, ``watchers`` others watch it."""
    raw = target.secret is None
    return closed_loops(
        target,
        urls,
        subscribers=watchers,
        loops=[("raw-presence" if raw else "presence", "presence.changed", 1)],
        duration=duration,
        text_bytes=0,
        setup=None if raw else "watch",
    )[0]


def measure_zone(cluster: BenchCluster, *, size: int) -> dict[str, float]:
    """``size`` players join the zone; one of them lists it."""
    setup_s = SETUP_S_PER_THOUSAND * (size / 1000 + 1)
    group = plans(
        cluster.urls[0],
        encoding="json",
        connections=size,
        processes=1,
        secret=cluster.secret,
        lifetime_s=3 * setup_s + 300.0,
    )
    began = time.monotonic()
    with LoadGenerators(group) as load:
        opened = load.command("open", setup_s + 30.0, timeout=setup_s)
        failed = sum(reply["failed"] for reply in opened)
        if failed:
            raise RuntimeError(f"{failed} of {size:,} connections failed to open")
        joined = load.command(
            "calls",
            setup_s + 30.0,
            method="presence.set",
            params={"zone": ZONE},
            timeout=setup_s,
        )
        if any(reply["failed"] for reply in joined):
            raise RuntimeError(f"joining the zone failed: {joined}")
        populated = time.monotonic() - began
        read_cpu = topics.cpu_reader(cluster)
        before = read_cpu()
        reply = load.command_one(
            0,
            "zone_walk",
            300.0,
            zone=ZONE,
            limit=PAGE_LIMIT,
            page_calls=PAGE_CALLS,
            walks=WALKS,
            expected=size,
        )
        used = topics.cpu_used(before, read_cpu())
    pages = reply["pages"]
    calls = PAGE_CALLS + WALKS * pages
    page_s = sorted(reply["page_s"])
    walk_s = statistics.median(reply["walk_s"])
    figures = {
        "page_p50_ms": percentile(page_s, 0.5) * 1000,
        "page_p99_ms": percentile(page_s, 0.99) * 1000,
        "walk_ms": walk_s * 1000,
        "walk_page_ms": walk_s * 1000 / max(pages, 1),
        "pages": pages,
        "populate_s": populated,
        "load_processes": len(group),
        "count": reply["count"],
        "errors": reply["errors"],
    }
    for name, seconds in used.items():
        figures[f"{name}_cpu_us_per_page"] = seconds / calls * 1e6
    return figures


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    duration = options.duration or (0.5 if options.tiny else DEFAULT_DURATION)
    watchers = options.watchers or (20 if options.tiny else DEFAULT_WATCHERS)
    zone_size = options.zone_size or (120 if options.tiny else DEFAULT_ZONE)
    changes: dict[str, list[dict[str, float]]] = {t: [] for t in CHANGE_TARGETS}
    zones: dict[str, list[dict[str, float]]] = {t: [] for t in ZONE_TARGETS}
    overrides = topics.overrides()
    for run_number in range(options.runs):
        header = f"run {run_number + 1}/{options.runs}"
        if options.skip != "changes":
            for backend, gateways, target in (
                ("memory", 1, "gateway"),
                ("redis", 2, "2 gateways, redis"),
            ):
                print(f"{header}: {watchers:,} watchers, {target}", flush=True)
                with BenchCluster(
                    workdir,
                    backend=backend,
                    gateways=gateways,
                    reactor=options.reactor,
                    overrides=overrides,
                ) as cluster:
                    changes[target].append(
                        measure_changes(
                            cluster,
                            cluster.urls,
                            watchers=watchers,
                            duration=duration,
                        )
                    )
            for mode in ("broadcast", "broadcast-raw"):
                print(f"{header}: {watchers:,} watchers, {mode}", flush=True)
                baseline = BaselineProcess(mode, options.reactor)
                try:
                    baseline.start()
                    changes[mode].append(
                        measure_changes(
                            baseline,
                            (baseline.url,),
                            watchers=watchers,
                            duration=duration,
                        )
                    )
                finally:
                    baseline.stop()
        if options.skip != "zone":
            for backend in ZONE_TARGETS:
                print(f"{header}: zone of {zone_size:,}, {backend}", flush=True)
                with BenchCluster(
                    workdir,
                    backend=backend,
                    reactor=options.reactor,
                    overrides=overrides,
                ) as cluster:
                    zones[backend].append(measure_zone(cluster, size=zone_size))
    cases = []
    if options.skip != "changes":
        cases.append(
            case_result(
                f"{watchers:,} watchers",
                CHANGE_FIGURES,
                changes,
                reference="broadcast",
                params={"watchers": watchers, "duration_s": duration, "window": 1},
            )
        )
    if options.skip != "zone":
        cases.append(
            case_result(
                f"zone of {zone_size:,}",
                ZONE_FIGURES,
                zones,
                reference="memory",
                params={
                    "players": zone_size,
                    "limit": PAGE_LIMIT,
                    "page_calls": PAGE_CALLS,
                    "walks": WALKS,
                    "max_connections_per_load_process": MAX_CONNECTIONS_PER_PROCESS,
                },
            )
        )
    return {"cases": cases, "notes": _notes(cases, duration)}


def _notes(cases: list[dict[str, Any]], duration: float) -> list[str]:
    errors = sum(run["errors"] for run in every_run(cases))
    notes = [
        "changes: closed loop, the next presence.set when every watcher has "
        f"the previous change; {duration:g} s per measurement after a warm-up; "
        "latency from sending presence.set to receipt (time.time() of both)",
        "zone: every player a real connection and session; times from sending "
        "presence.zone to its answer, one call at a time; ratio = redis / memory",
        f"{errors} errors in all runs (changes missing or out of order; zone "
        "walks listing a player twice, out of order or not at all; wrong counts)",
    ]
    return notes
