"""Scenario ``services``: routed procedures, player to service and back.

A player's call of a routed procedure crosses the gateway twice more than
``sys.ping`` does: the gateway sends it on to the service that registered
the procedure (:mod:`bench.callee`, which answers at once) and sends the
service's response back. Each topology is measured against a direct
``sys.ping`` on the player's own gateway in the same run, so the ratio is
what the routing adds:

- one gateway: the player and the service on one gateway (memory backend);
- two gateways: the player on one, the service on the other, sharing one
  Redis; the call and its response cross the bus (Redis pub/sub, and NATS
  where the machine has a ``nats-server``).

Two shapes: one call at a time (the latency of a round trip) and 100 calls
in flight on one connection (how many calls one player connection gets
through). The server CPU figures are the player's gateway's.

Then the bus itself: one topic with ``--subscribers`` (1,000) players
split over two gateways, the publisher on the first, published in a
closed loop (:func:`bench.scenarios.fanout.measure`, windows 1 and 16),
on Redis pub/sub and on NATS (the reference is Redis). Redis stores the
history either way; what differs is how each event reaches the second
gateway.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import topics
from bench.callee import Callee
from bench.gateway import BenchCluster
from bench.report import case_result, every_run
from bench.scenarios import fanout
from bench.scenarios.rpc import Shape, figures_of, measure

SUMMARY = (
    "routed procedure round trips (player -> gateway -> service -> back) "
    "through one and two gateways, against sys.ping"
)
DEFAULT_DURATION = 5.0
PROCEDURE = "bench.echo"
SHAPES = (
    Shape("sequential, 1 conn", 1, 1, "round trips/s", (0.5, 0.99)),
    Shape("pipelined, 1 conn, window 100", 1, 100, "calls/s", (0.5, 0.99)),
)


BUSES = ("redis", "nats")
FANOUT_WINDOWS = (1, 16)
DEFAULT_SUBSCRIBERS = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--subscribers",
        type=int,
        default=None,
        help=f"subscribers of the bus fan-out (default {DEFAULT_SUBSCRIBERS:,})",
    )


def service_token(secret: str) -> str:
    """A ``service`` token for the callee, signed with the gateways' secret."""
    from rtgateway.config import parse_config
    from rtgateway.tokens import mint_token

    auth = parse_config(
        {"auth": {"secret": secret}}, source="<bench>", base_dir=Path.cwd(), environ={}
    ).auth
    return mint_token(auth, "bench-service", roles=["service"])


def topologies() -> list[tuple[str, dict[str, Any]]]:
    """(name, BenchCluster arguments) of every topology measured."""
    return [
        ("one gateway", {"backend": "memory", "gateways": 1}),
        ("two gateways, Redis bus", {"backend": "redis", "gateways": 2}),
        (
            "two gateways, NATS bus",
            {"backend": "redis", "gateways": 2, "bus": "nats"},
        ),
    ]


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every topology and shape: sys.ping then the routed call, ``--runs`` times."""
    duration = options.duration or (0.3 if options.tiny else DEFAULT_DURATION)
    load_procs = 1
    cases = []
    for topology, arguments in topologies():
        runs: dict[str, dict[str, list[dict[str, float]]]] = {
            shape.name: {"sys.ping": [], "routed call": []} for shape in SHAPES
        }
        cluster = BenchCluster(workdir, reactor=options.reactor, **arguments).start()
        try:
            player_gateway = cluster.gateways[0]
            service_gateway = cluster.gateways[-1]
            token = service_token(player_gateway.secret)
            lifetime = options.runs * len(SHAPES) * (3 * duration + 60) + 60
            with Callee(service_gateway.url, token, PROCEDURE, lifetime):
                for number in range(options.runs):
                    for shape in SHAPES:
                        for target, method in (
                            ("sys.ping", "sys.ping"),
                            ("routed call", PROCEDURE),
                        ):
                            print(
                                f"run {number + 1}/{options.runs}: {topology}, "
                                f"{shape.name}, {target}",
                                flush=True,
                            )
                            runs[shape.name][target].append(
                                measure(
                                    player_gateway,
                                    encoding="json",
                                    shape=shape,
                                    duration=duration,
                                    load_procs=load_procs,
                                    method=method,
                                )
                            )
        finally:
            cluster.stop()
        cases.extend(
            case_result(
                f"{topology}, {shape.name}",
                figures_of(shape),
                runs[shape.name],
                reference="sys.ping",
                params={
                    "topology": topology,
                    "window": shape.window,
                    "duration_s": duration,
                },
            )
            for shape in SHAPES
        )
    cases.extend(bus_fanout(options, workdir, duration))
    errors = sum(run["errors"] for run in every_run(cases))
    return {
        "cases": cases,
        "notes": [
            f"reactor {options.reactor}; JSON; one callee process answering in "
            f"call order; {duration:g} s per measurement after a warm-up",
            "server CPU is the player's gateway's (on two gateways the "
            "callee's gateway and Redis work too)",
            f"{errors} wrong or missing responses or deliveries in all runs",
            "bus fan-out: reliable events, closed loop (the next publication "
            "leaves when every subscriber has the oldest of <window>); server "
            "CPU is both gateways'",
        ],
    }


def bus_fanout(
    options: argparse.Namespace, workdir: Path, duration: float
) -> list[dict[str, Any]]:
    """One topic's subscribers on two gateways, Redis pub/sub against NATS."""
    subscribers = options.subscribers or (20 if options.tiny else DEFAULT_SUBSCRIBERS)
    loops = [("pubsub", topics.RELIABLE_TYPE, window) for window in FANOUT_WINDOWS]
    runs: dict[int, dict[str, list[dict[str, float]]]] = {
        window: {bus: [] for bus in BUSES} for window in FANOUT_WINDOWS
    }
    for number in range(options.runs):
        for bus in BUSES:
            print(
                f"run {number + 1}/{options.runs}: bus fan-out, "
                f"{subscribers:,} subscribers, {bus}",
                flush=True,
            )
            results = fanout.on_two_gateways(
                workdir,
                options.reactor,
                bus,
                subscribers=subscribers,
                loops=loops,
                duration=duration,
                text_bytes=100,
            )
            for window, figures in zip(FANOUT_WINDOWS, results, strict=True):
                runs[window][bus].append(figures)
    return [
        case_result(
            f"bus fan-out, {subscribers:,} subscribers on 2 gateways, window {window}",
            fanout.FIGURES,
            runs[window],
            reference="redis",
            params={"subscribers": subscribers, "window": window},
        )
        for window in FANOUT_WINDOWS
    ]
