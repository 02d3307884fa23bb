"""Scenario ``fanout``: one publisher, N subscribers of one topic.

For each N (100, 1,000 and 5,000 by default), one load process opens the
publisher and the N subscribers, and the publisher publishes in a closed
loop (:func:`bench.workloads.closed_loop`), so each server runs as fast as
it delivers, in two regimes (``--windows 1,16``):

- window 1: the next publication leaves when every subscriber has the
  previous one. Latency here is the time one fan-out takes, with no
  queue: the figure a player sees.
- window 16: sixteen publications in flight, each replaced when every
  subscriber has it. Servers then write several events per connection per
  system call: the most deliveries per second they can do, at the price of
  queueing latency.

Each event carries its sending time; a subscriber's receipt time less that
is the delivery latency. Targets, each on fresh processes:

- ``gateway``: one gateway on the memory backend, a reliable event type
  (``bench.chat``, a chat line) on a namespace with history: every event is
  stored, numbered and delivered with its offset;
- ``gateway volatile``: the same gateway and connections, a volatile type
  with the same data (no history, no offset);
- ``2 gateways, redis``: two gateways sharing one redis-server, the
  subscribers split between them, the publisher on the first, reliable;
- ``2 gateways, nats``: the same with a nats-server as the bus between
  them (Redis still stores the history);
- ``broadcast``: the baseline, raw Autobahn, sending a message prepared
  once to every other client with ``sendPreparedMessage`` (the reference);
- ``broadcast-raw``: the baseline writing the prepared frame straight to
  every transport, the ceiling of the stack.

The baseline's publisher sends the very notification a gateway subscriber
receives (same shape and size, offsets included), so both deliver the same
bytes and the subscribers check them the same way.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench import topics
from bench.baseline import BaselineProcess
from bench.gateway import BenchCluster
from bench.loadgen import (
    MAX_CONNECTIONS_PER_PROCESS,
    LoadGenerators,
    client_loop,
    plans,
)
from bench.report import case_result, every_run

SUMMARY = (
    "one publisher, N subscribers: deliveries/s, delivery latency and CPU per "
    "delivery on one gateway and two on Redis, against raw Autobahn broadcast"
)
DEFAULT_SIZES = (100, 1000, 5000)
DEFAULT_DURATION = 5.0
TOPIC = f"{topics.NAMESPACE}.room"
#: A bound on publications far above what any server here delivers.
MAX_DELIVERIES_PER_SECOND = 1_000_000
#: Time for opening and subscribing, per thousand connections.
SETUP_S_PER_THOUSAND = 30.0

FIGURES = {
    "deliveries_per_s": "deliveries/s",
    "publications_per_s": "publications/s",
    "latency_p50_ms": "latency p50 ms",
    "latency_p99_ms": "latency p99 ms",
    "latency_max_ms": "latency max ms",
    "server_cpu_us_per_delivery": "server CPU us/delivery",
    "redis_cpu_us_per_delivery": "redis CPU us/delivery",
    "nats_cpu_us_per_delivery": "nats CPU us/delivery",
    "load_cpu_us_per_delivery": "load CPU us/delivery",
    "server_cpu_cores": "server CPU cores",
    "redis_cpu_cores": "redis CPU cores",
    "nats_cpu_cores": "nats CPU cores",
    "load_cpu_cores": "load CPU cores",
}
TARGETS = (
    "gateway",
    "gateway volatile",
    "2 gateways, redis",
    "2 gateways, nats",
    "broadcast",
    "broadcast-raw",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        default=None,
        help="comma-separated subscriber counts (default: 100,1000,5000)",
    )
    parser.add_argument(
        "--windows",
        default="1,16",
        help="comma-separated publications in flight, one case each: the next "
        "leaves when every subscriber has the oldest (default: 1,16)",
    )
    parser.add_argument(
        "--text-bytes",
        type=int,
        default=100,
        help="characters of chat text in each event (default 100)",
    )
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="skip the two gateways (on the Redis and the NATS bus)",
    )


def _sizes(options: argparse.Namespace) -> list[int]:
    if options.sizes:
        return [int(size) for size in options.sizes.split(",")]
    return [20] if options.tiny else list(DEFAULT_SIZES)


def measure(
    target: Any,
    urls: tuple[str, ...],
    *,
    subscribers: int,
    loops: list[tuple[str, str, int]],
    duration: float,
    text_bytes: int,
    setup: str | None = "subscribe",
) -> list[dict[str, float]]:
    """Open the publisher and ``subscribers`` on a started target, then run
    one closed loop per ``(kind, event type, window)`` of ``loops`` on them,
    each after a warm-up; the figures of each loop.

    On a gateway the receivers first subscribe to the topic (``setup``
    ``subscribe``) or watch the publisher's presence (``watch``); the
    baseline sends to every client anyway.
    """
    if subscribers + 1 > MAX_CONNECTIONS_PER_PROCESS:
        raise RuntimeError(
            f"fanout keeps its subscribers in one load process: at most "
            f"{MAX_CONNECTIONS_PER_PROCESS - 1:,}"
        )
    setup_s = SETUP_S_PER_THOUSAND * (subscribers / 1000 + 1)
    (plan,) = plans(
        urls[0],
        encoding="json",
        connections=subscribers + 1,
        processes=1,
        secret=target.secret,
        lifetime_s=2 * setup_s + len(loops) * (3 * duration + 60.0),
        more_urls=urls[1:],
    )
    read_cpu = topics.cpu_reader(target)
    count = int(duration * MAX_DELIVERIES_PER_SECOND / subscribers) + 10
    results = []
    with LoadGenerators([plan]) as load:
        (opened,) = load.command("open", setup_s + 30.0, timeout=setup_s)
        if opened["failed"]:
            raise RuntimeError(f"{opened['failed']} connections failed to open")
        publisher = f"p{plan.first_player}"
        topic = f"presence.{publisher}" if setup == "watch" else TOPIC
        if target.secret is not None and setup is not None:
            method, params = {
                "subscribe": ("pubsub.subscribe", {"topic": topic}),
                "watch": ("presence.watch", {"players": [publisher]}),
            }[setup]
            (subscribed,) = load.command(
                "calls",
                setup_s + 30.0,
                method=method,
                params=params,
                which="rest",
                timeout=setup_s,
            )
            if subscribed["failed"]:
                raise RuntimeError(f"{method} failed: {subscribed}")
        for kind, type_name, window in loops:
            loop = {
                "kind": kind,
                "topic": topic,
                "type_name": type_name,
                "count": count,
                "window": window,
                "text_bytes": text_bytes,
            }
            warmup = min(1.0, duration / 4)
            load.command("closed_loop", warmup + 60.0, **loop, duration=warmup)
            before = read_cpu()
            began = time.monotonic()
            (reply,) = load.command(
                "closed_loop", duration + 60.0, **loop, duration=duration
            )
            wall = time.monotonic() - began
            used = topics.cpu_used(before, read_cpu())
            deliveries = reply["deliveries"] or 1
            figures = {
                "deliveries_per_s": reply["deliveries"] / reply["elapsed"],
                "publications_per_s": reply["completed"] / reply["elapsed"],
                **topics.latency_figures(reply["latencies"]),
                "load_cpu_us_per_delivery": reply["cpu_s"] / deliveries * 1e6,
                "load_cpu_cores": reply["cpu_s"] / wall,
                "deliveries": reply["deliveries"],
                "publications": reply["published"],
                "errors": reply["errors"],
                "message_bytes": reply["message_bytes"],
            }
            for name, seconds in used.items():
                figures[f"{name}_cpu_us_per_delivery"] = seconds / deliveries * 1e6
                figures[f"{name}_cpu_cores"] = seconds / wall
            results.append(figures)
    return results


def on_two_gateways(
    workdir: Path, reactor: str, bus: str, **measuring: Any
) -> list[dict[str, float]]:
    """:func:`measure` on two fresh gateways sharing Redis, ``bus`` between them.

    The subscribers are split over the two, the publisher on the first.
    """
    with BenchCluster(
        workdir,
        backend="redis",
        gateways=2,
        reactor=reactor,
        overrides=topics.overrides(),
        bus=bus,
    ) as cluster:
        return measure(cluster, cluster.urls, **measuring)


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every size on every target, each on fresh processes, ``--runs`` times."""
    duration = options.duration or (0.5 if options.tiny else DEFAULT_DURATION)
    sizes = _sizes(options)
    windows = [int(window) for window in options.windows.split(",")]
    shape = {"duration": duration, "text_bytes": options.text_bytes}
    keys = [(size, window) for size in sizes for window in windows]
    runs: dict[tuple[int, int], dict[str, list[dict[str, float]]]] = {
        key: {name: [] for name in TARGETS} for key in keys
    }

    def loops(kind: str, *types: str) -> list[tuple[str, str, int]]:
        return [(kind, name, window) for name in types for window in windows]

    def record(target: str, size: int, results: list[dict[str, float]]) -> None:
        # Results come in loops() order: type by type, window by window.
        for index, figures in enumerate(results):
            runs[size, windows[index % len(windows)]][target].append(figures)

    for run_number in range(options.runs):
        for size in sizes:
            header = f"run {run_number + 1}/{options.runs}: {size:,} subscribers"
            print(f"{header}, gateway", flush=True)
            with BenchCluster(
                workdir, reactor=options.reactor, overrides=topics.overrides()
            ) as cluster:
                results = measure(
                    cluster,
                    cluster.urls,
                    subscribers=size,
                    loops=loops("pubsub", topics.RELIABLE_TYPE, topics.VOLATILE_TYPE),
                    **shape,
                )
            record("gateway", size, results[: len(windows)])
            record("gateway volatile", size, results[len(windows) :])
            for bus in () if options.no_cluster else ("redis", "nats"):
                print(f"{header}, 2 gateways, {bus} bus", flush=True)
                results = on_two_gateways(
                    workdir,
                    options.reactor,
                    bus,
                    subscribers=size,
                    loops=loops("pubsub", topics.RELIABLE_TYPE),
                    **shape,
                )
                record(f"2 gateways, {bus}", size, results)
            for mode in ("broadcast", "broadcast-raw"):
                print(f"{header}, baseline {mode}", flush=True)
                baseline = BaselineProcess(mode, options.reactor)
                try:
                    baseline.start()
                    results = measure(
                        baseline,
                        (baseline.url,),
                        subscribers=size,
                        loops=loops("raw-pubsub", topics.RELIABLE_TYPE),
                        **shape,
                    )
                finally:
                    baseline.stop()
                record(mode, size, results)
    cases = [
        case_result(
            f"{size:,} subscribers, window {window}",
            FIGURES,
            {name: done for name, done in runs[size, window].items() if done},
            reference="broadcast",
            params={
                "subscribers": size,
                "window": window,
                "duration_s": duration,
                "message_bytes": {
                    name: done[0]["message_bytes"]
                    for name, done in runs[size, window].items()
                    if done
                },
            },
        )
        for size, window in keys
    ]
    return {"cases": cases, "notes": _notes(cases, options, duration)}


def _notes(
    cases: list[dict[str, Any]], options: argparse.Namespace, duration: float
) -> list[str]:
    errors = sum(run["errors"] for run in every_run(cases))
    notes = [
        "closed loop: at most <window> publications in flight, the next leaves "
        f"when every subscriber has the oldest; {duration:g} s per measurement after a "
        f"warm-up; one load process (websockets sans-io on {client_loop()}); "
        f"reactor {options.reactor}",
        "latency: receipt time.time() less the publisher's time.time() carried "
        "in the event; CPU us/delivery: CPU seconds over deliveries",
        f"{errors} deliveries missing, out of order or refused in all runs",
    ]
    for case in cases:
        size, window = case["params"]["subscribers"], case["params"]["window"]
        summary = case["summary"]
        if "gateway" not in summary or "broadcast" not in summary:
            continue
        rate = summary["gateway"]["deliveries_per_s"]["median"]
        line = (
            f"{size:,} subscribers, window {window}: gateway {rate:,.0f} "
            "deliveries/s = "
            f"{case['ratio']['gateway']['deliveries_per_s']:.2f} x broadcast "
            f"(target >= 1)"
        )
        if "broadcast-raw" in summary:
            ceiling = summary["broadcast-raw"]["deliveries_per_s"]["median"]
            line += f", {rate / ceiling:.2f} x broadcast-raw (the ceiling)"
        p99 = summary["gateway"]["latency_p99_ms"]["median"]
        line += f"; p99 {p99:.1f} ms"
        if size == 1000 and window == 1:
            line += f" ({'meets' if p99 < 25 else 'misses'} the 25 ms target)"
        notes.append(line)
    return notes
