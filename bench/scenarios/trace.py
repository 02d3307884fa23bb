"""Scenario ``trace``: what ``admin.trace`` costs, traced or not.

The ``rpc`` pipelined case (one connection, 100 ``sys.ping`` in flight,
JSON) against three targets in the same run:

- ``no admin``: a gateway with ``[admin] enabled = false``, so no admin
  component, no statistics sampler, nobody ever traces;
- ``untraced``: a gateway with the admin methods, its connection traced by
  nobody: the price of the hook on every frame (one attribute check) and of
  the sampler;
- ``traced``: the same gateway while an admin connection traces that
  connection at ``trace_rate`` frames a second (``--trace-rate``); the
  admin reads its ``admin.frame`` notifications in a thread of this
  process.

The ratios to ``no admin`` are the cost of each; the traced runs also say
how many frames the admin was shown and how many were dropped.
"""

from __future__ import annotations

import argparse
import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from bench.gateway import BenchGateway
from bench.loadgen import client_loop
from bench.report import case_result, every_run
from bench.scenarios.rpc import DEFAULT_DURATION, figures_of, measure, shapes
from rtgateway.testing import make_config, token_for

SUMMARY = (
    "pipelined sys.ping on a gateway without admin methods, on an untraced "
    "connection and on one an admin traces"
)
#: The load generator's only connection is this player's (bench.worker).
TRACED_PLAYER = "p0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trace-rate",
        type=float,
        default=100.0,
        help="[admin] trace_rate of the traced gateway (default: 100 frames/s)",
    )


class AdminClient:
    """An admin connection whose thread reads everything the gateway sends."""

    def __init__(self, url: str, secret: str) -> None:
        token = token_for(
            make_config({"auth": {"secret": secret}}), "inspector", roles=["admin"]
        )
        self._ws = connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
        )
        json.loads(self._ws.recv(timeout=10))  # the welcome
        self._ids = 0
        self._responses: dict[int, dict[str, Any]] = {}
        self._answered = threading.Condition()
        self.frames = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def call(self, method: str, params: dict[str, Any]) -> Any:
        self._ids += 1
        request_id = self._ids
        request = {"jsonrpc": "2.0", "method": method, "params": params}
        self._ws.send(json.dumps({**request, "id": request_id}))
        with self._answered:
            if not self._answered.wait_for(
                lambda: request_id in self._responses, timeout=30
            ):
                raise RuntimeError(f"no answer to {method}")
            response = self._responses.pop(request_id)
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        return response["result"]

    def close(self) -> None:
        self._ws.close()
        self._reader.join(timeout=10)

    def _read(self) -> None:
        for text in self._ws:
            message = json.loads(text)
            if message.get("method") == "admin.frame":
                self.frames += 1
            elif "id" in message:
                with self._answered:
                    self._responses[message["id"]] = message
                    self._answered.notify_all()


@contextmanager
def traced(gateway: BenchGateway, counts: dict[str, float]) -> Iterator[None]:
    """Trace the load's connection while the block runs; ``counts`` filled after."""
    admin = AdminClient(gateway.url, gateway.secret)
    try:
        rows = admin.call("admin.connections", {"filter": TRACED_PLAYER})
        (session_id,) = [
            row["session_id"]
            for row in rows["connections"]
            if row["player_id"] == TRACED_PLAYER
        ]
        admin.call("admin.trace", {"session_id": session_id})
        yield
        result = admin.call("admin.untrace", {"session_id": session_id})
        counts["frames_shown"] = result["shown"]
        counts["frames_dropped"] = result["dropped"]
        counts["frames_received"] = admin.frames
    finally:
        admin.close()


FIGURES = {
    "frames_shown": "frames shown",
    "frames_dropped": "frames dropped",
}


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The three targets, one after the other, ``--runs`` times."""
    duration = options.duration or (0.3 if options.tiny else DEFAULT_DURATION)
    load_procs = options.load_procs or 1
    shape = shapes(options.tiny)[1]
    plain = BenchGateway(
        workdir,
        reactor=options.reactor,
        overrides={"admin": {"enabled": False}},
        name="gw-no-admin",
    )
    admin = BenchGateway(
        workdir,
        reactor=options.reactor,
        overrides={"admin": {"trace_rate": options.trace_rate}},
        name="gw-admin",
    )
    runs: dict[str, list[dict[str, float]]] = {
        "no admin": [],
        "untraced": [],
        "traced": [],
    }
    try:
        plain.start()
        admin.start()
        for number in range(options.runs):
            for name, target in (
                ("no admin", plain),
                ("untraced", admin),
                ("traced", admin),
            ):
                print(f"run {number + 1}/{options.runs}: {name}", flush=True)
                counts: dict[str, float] = {}
                tracing = name == "traced"
                figures = measure(
                    target,
                    encoding="json",
                    shape=shape,
                    duration=duration,
                    load_procs=load_procs,
                    around=functools.partial(traced, admin, counts)
                    if tracing
                    else None,
                )
                if tracing and counts["frames_received"] != counts["frames_shown"]:
                    figures["errors"] += 1
                runs[name].append({**figures, **counts})
    finally:
        plain.stop()
        admin.stop()
    case = case_result(
        f"json {shape.name}",
        {**figures_of(shape), **FIGURES},
        runs,
        reference="no admin",
        params={
            "duration_s": duration,
            "trace_rate": options.trace_rate,
            "load_procs": load_procs,
        },
    )
    errors = sum(run["errors"] for run in every_run([case]))
    return {
        "cases": [case],
        "notes": [
            f"reactor {options.reactor}; 1 load process, websockets sans-io "
            f"client on {client_loop()}; {duration:g} s per measurement after "
            "a warm-up; the admin reads its trace in a thread of the bench",
            f"{errors} wrong or missing responses (or frames the admin was "
            "shown but did not receive) in all runs",
        ],
    }
