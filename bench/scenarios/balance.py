"""Scenario ``balance``: which callee takes a call, in turn or the least busy.

``[procedures] balance`` picks among a gateway's own callees of a
procedure. The choice matters when the callees do not answer at the same
pace (one runs on a loaded machine, one is pausing for its garbage
collector): in turn, the slow one is given as many calls as the others and
builds a queue; least busy gives it fewer. Wall-clock load cannot show this
reliably on a shared two-core machine, so this is a simulation on the
gateway's real routing code: the in-process service tree on a
``task.Clock``, one player sending calls at Poisson arrival times and
callees that each serve one call at a time, first come first served, with
exponential service times. Every policy sees the same arrivals and service
times (one seed per run); latency is the simulated time from the player's
call to its answer, so the figures do not depend on the machine. Wall
time per call is measured too: it is what the routing costs in CPU
(with the in-memory transport's own cost, the same for both).
"""

from __future__ import annotations

import argparse
import heapq
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import case_result
from rtgateway.testing import MemoryGateway, make_config

SUMMARY = "least busy against round robin among one gateway's callees, simulated"
PROCEDURE = "bench.work"
POLICIES = ("round_robin", "least_busy")
FIGURES = {
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
    "timeouts": "timeouts",
    "wall_us_per_call": "wall us/call",
}
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Case:
    """Callees' mean service times (ms) and the offered load (share of capacity)."""

    name: str
    service_ms: tuple[float, ...]
    load: float

    @property
    def rate(self) -> float:
        """Calls per second offered: ``load`` times what the callees can serve."""
        return self.load * sum(1000.0 / ms for ms in self.service_ms)


CASES = (
    Case("2 equal callees (2 ms), 80 % load", (2.0, 2.0), 0.8),
    Case("fast (1 ms) and slow (4 ms) callee, 80 % load", (1.0, 4.0), 0.8),
    Case("3 callees, one 10x slower (1, 1, 10 ms), 70 % load", (1.0, 1.0, 10.0), 0.7),
)


@dataclass
class Callee:
    """A service connection that serves one call at a time, in arrival order."""

    client: Any
    mean_s: float
    seen: int = 0
    queue: list[int] = field(default_factory=list)
    busy: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calls", type=int, default=None, help="calls per case and policy (4000)"
    )


def simulate(case: Case, policy: str, calls: int, seed: int) -> dict[str, float]:
    """One policy on one case: the latency figures and the wall time per call."""
    settings = {
        "procedures": {"balance": policy, "call_timeout_s": TIMEOUT_S},
        "limits": {"rate_per_second": 1_000_000, "rate_burst": 1_000_000},
    }
    gateway = MemoryGateway(make_config(settings))
    try:
        callees = []
        for n, mean_ms in enumerate(case.service_ms):
            token = gateway.token(f"svc{n}", roles=["service"])
            client = gateway.open(f"svc{n}", token=token)
            response = gateway.call(client, "rpc.register", {"procedure": PROCEDURE})
            assert "result" in response, response
            callees.append(Callee(client, mean_ms / 1000))
        player = gateway.open("player")
        return _run(gateway, player, callees, case.rate, calls, random.Random(seed))
    finally:
        gateway.stop()


def _run(gateway, player, callees, rate, calls, rng) -> dict[str, float]:
    clock = gateway.clock
    start = clock.seconds()
    events: list[tuple[float, int, str, Any]] = []  # (time, order, kind, data)
    order = 0
    at = start
    for call_id in range(1, calls + 1):
        at += rng.expovariate(rate)
        events.append((at, order, "call", call_id))
        order += 1
    heapq.heapify(events)
    sent: dict[int, float] = {}
    latencies: list[float] = []
    timeouts = 0
    answered = 0
    began = time.perf_counter()
    while events:
        at, _, kind, data = heapq.heappop(events)
        clock.advance(max(0.0, at - clock.seconds()))
        if kind == "call":
            sent[data] = clock.seconds()
            player.sendMessage(
                b'{"jsonrpc":"2.0","method":"%s","params":{},"id":%d}'
                % (PROCEDURE.encode(), data)
            )
        else:  # a callee finished the call at the head of its queue
            callee, request_id = data
            callee.client.sendMessage(
                b'{"jsonrpc":"2.0","result":{},"id":%d}' % request_id
            )
            callee.busy = False
        gateway.flush()
        for callee in callees:
            received = callee.client.received
            for message in received[callee.seen :]:
                if isinstance(message, dict) and message.get("method") == PROCEDURE:
                    callee.queue.append(message["id"])
            callee.seen = len(received)
            if not callee.busy and callee.queue:
                callee.busy = True
                done = clock.seconds() + rng.expovariate(1 / callee.mean_s)
                heapq.heappush(
                    events, (done, order, "done", (callee, callee.queue.pop(0)))
                )
                order += 1
        for message in player.received[answered:]:
            if isinstance(message, dict) and message.get("id") in sent:
                if "error" in message:
                    timeouts += 1
                else:
                    latencies.append(clock.seconds() - sent[message["id"]])
        answered = len(player.received)
        if not events and len(latencies) + timeouts < calls:
            clock.advance(TIMEOUT_S)  # the calls still waiting time out
            gateway.flush()
            timeouts = calls - len(latencies)
    wall = time.perf_counter() - began
    latencies.sort()

    def at_quantile(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "p50_ms": at_quantile(0.5),
        "p99_ms": at_quantile(0.99),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "timeouts": float(timeouts),
        "wall_us_per_call": wall / calls * 1e6,
    }


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every case under both policies, ``--runs`` times (one seed per run)."""
    calls = options.calls or (300 if options.tiny else 4000)
    cases = []
    for case in CASES:
        runs: dict[str, list[dict[str, float]]] = {policy: [] for policy in POLICIES}
        for number in range(options.runs):
            for policy in POLICIES:
                print(f"run {number + 1}/{options.runs}: {case.name}, {policy}")
                runs[policy].append(simulate(case, policy, calls, seed=number))
        cases.append(
            case_result(
                case.name,
                FIGURES,
                runs,
                reference="round_robin",
                params={"service_ms": list(case.service_ms), "calls": calls},
            )
        )
    return {
        "cases": cases,
        "notes": [
            f"{calls} calls per case and policy from one player, Poisson arrivals "
            "at the load given; each callee serves one call at a time, exponential "
            "service times of the mean given; simulated time on a task.Clock",
            f"timeouts: calls not answered within {TIMEOUT_S:g} s (-32006)",
            "wall us/call: real time the simulation took per call (the routing "
            "code and the in-memory transport)",
        ],
    }
