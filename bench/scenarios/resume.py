"""Scenario ``resume``: what bringing a session back costs.

A player subscribed to a reliable topic (``bench.chat`` on a namespace
with history) drops its connection (a TCP reset). While it is away,
another player publishes K events on the topic (100, 1,000 and 10,000 by
default; the namespace keeps the largest K, and ``[session] max_replay`` is
set to it). The player then opens a new connection and calls
``session.resume`` with its position on the topic. Measured: the time from
sending ``session.resume`` to having received all K replayed events, and to
its reply; every replayed offset is checked to arrive exactly once and in
order (``errors`` counts the others, and a topic not recovered).

Targets, each measurement with fresh players on a fresh topic:

- ``memory``: one gateway on the memory backend;
- ``redis``: a gateway on Redis, the player resuming where it was;
- ``redis, other gateway``: two gateways sharing one Redis, the player
  leaving the first and resuming on the second (where the publisher is).

There is no baseline: raw Autobahn has no sessions. Ratios are to
``memory``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench import topics
from bench.gateway import BenchCluster
from bench.loadgen import LoadGenerators, plans
from bench.report import case_result, every_run

SUMMARY = (
    "session.resume replaying K missed events (100, 1,000, 10,000): time to "
    "the last one, on memory, Redis and Redis across two gateways"
)
DEFAULT_COUNTS = (100, 1000, 10000)
#: The gateways' send buffer bound here: the gateway's own default. A replay
#: is sent at the pace the connection drains, so even 10,000 events of ~300
#: bytes (3 MB) pass a 1 MiB bound.
SEND_BUFFER_BYTES = 2**20
#: Time the gateway gets to notice the dropped connection before the
#: publications start (a player is away for longer than that).
AWAY_S = 0.3

FIGURES = {
    "resume_ms": "resume to last event ms",
    "reply_ms": "resume reply ms",
    "events_per_s": "replayed events/s",
    "server_cpu_ms": "gateway CPU ms",
    "redis_cpu_ms": "redis CPU ms",
    "load_cpu_ms": "load CPU ms",
    "publish_s": "publishing K s",
}
TARGETS = ("memory", "redis", "redis, other gateway")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--counts",
        default=None,
        help="comma-separated numbers of missed events (default: 100,1000,10000)",
    )
    parser.add_argument(
        "--send-buffer-bytes",
        type=int,
        default=SEND_BUFFER_BYTES,
        help="the gateways' [limits] send_buffer_bytes (default 1 MiB, the "
        "gateway's own default)",
    )


def _counts(options: argparse.Namespace) -> list[int]:
    if options.counts:
        return [int(count) for count in options.counts.split(",")]
    return [20] if options.tiny else list(DEFAULT_COUNTS)


def measure(
    cluster: BenchCluster,
    urls: tuple[str, ...],
    *,
    resume_on: int,
    count: int,
    topic: str,
    first_player: int,
) -> dict[str, float]:
    """One resume after ``count`` missed events; its figures.

    Connection 0 is the player, connection 1 the publisher; with two
    ``urls`` they are on different gateways. The player comes back on
    ``urls[resume_on]``.
    """
    timeout = 60.0 + count / 100
    (plan,) = plans(
        urls[0],
        encoding="json",
        connections=2,
        processes=1,
        secret=cluster.secret,
        lifetime_s=4 * timeout + 60.0,
        first_player=first_player,
        more_urls=urls[1:],
    )
    with LoadGenerators([plan]) as load:
        (opened,) = load.command("open", 60.0, timeout=30.0)
        if opened["failed"]:
            raise RuntimeError(f"connections failed to open: {opened['errors']}")
        load.command("resume_prepare", 60.0, topic=topic)
        time.sleep(AWAY_S)
        (published,) = load.command(
            "publish_many",
            timeout + 30.0,
            index=1,
            topic=topic,
            type_name=topics.RELIABLE_TYPE,
            count=count,
            timeout=timeout,
        )
        if published["errors"]:
            raise RuntimeError(f"publishing failed: {published}")
        load.command("reconnect", 60.0, url_index=resume_on)
        read_cpu = topics.cpu_reader(cluster)
        before = read_cpu()
        (reply,) = load.command(
            "resume",
            timeout + 30.0,
            topic=topic,
            type_name=topics.RELIABLE_TYPE,
            expected=count,
            timeout=timeout,
        )
        used = topics.cpu_used(before, read_cpu())
    figures = {
        "resume_ms": reply["resume_s"] * 1000,
        "reply_ms": reply["reply_s"] * 1000,
        "events_per_s": count / reply["resume_s"],
        "load_cpu_ms": reply["cpu_s"] * 1000,
        "publish_s": published["seconds"],
        "received": reply["received"],
        "errors": reply["errors"],
        "closed_4008": int(reply["close_code"] == 4008),
    }
    for name, seconds in used.items():
        figures[f"{name}_cpu_ms"] = seconds * 1000
    return figures


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every count on every target, ``--runs`` times; fresh servers per run."""
    counts = _counts(options)
    overrides = topics.overrides(history_size=max(counts), max_replay=max(counts))
    overrides["limits"] = {"send_buffer_bytes": options.send_buffer_bytes}
    runs: dict[int, dict[str, list[dict[str, float]]]] = {
        count: {name: [] for name in TARGETS} for count in counts
    }
    player = 0
    for run_number in range(options.runs):
        for backend, gateways in (("memory", 1), ("redis", 2)):
            print(f"run {run_number + 1}/{options.runs}: {backend}", flush=True)
            with BenchCluster(
                workdir,
                backend=backend,
                gateways=gateways,
                reactor=options.reactor,
                overrides=overrides,
            ) as cluster:
                first = cluster.urls[:1]
                setups = [(backend, first, 0)]
                if backend == "redis":
                    setups.append(("redis, other gateway", cluster.urls, 1))
                for target, urls, resume_on in setups:
                    for count in counts:
                        print(f"  {target}: {count:,} events", flush=True)
                        runs[count][target].append(
                            measure(
                                cluster,
                                urls,
                                resume_on=resume_on,
                                count=count,
                                topic=f"{topics.NAMESPACE}.resume-{player}",
                                first_player=player,
                            )
                        )
                        player += 2
    cases = [
        case_result(
            f"{count:,} missed events",
            FIGURES,
            runs[count],
            reference="memory",
            params={
                "missed_events": count,
                "history_size": max(counts),
                "max_replay": max(counts),
                "send_buffer_bytes": options.send_buffer_bytes,
            },
        )
        for count in counts
    ]
    runs = every_run(cases)
    errors = sum(run["errors"] for run in runs)
    closed = sum(run["closed_4008"] for run in runs)
    return {
        "cases": cases,
        "notes": [
            "time from sending session.resume to the last replayed event; the "
            "player's connection was reset and K events published while away",
            f"{errors} replayed offsets missing, repeated or out of order in all "
            "runs (topics not recovered included)",
            "redis: the player resumes on the gateway it left; redis, other "
            "gateway: it left the first of two gateways and resumes on the second",
            "CPU figures are for the resume alone, from /proc (10 ms ticks: "
            "coarse for the smallest K)",
            f"send_buffer_bytes {options.send_buffer_bytes:,}: {closed} resumed "
            "connection(s) closed 4008 (send buffer full) during the replay",
        ],
    }
