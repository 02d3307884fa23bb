"""Scenario ``client``: what one ``rtgateway.client`` sustains.

Three figures for the client SDK on both transports (``rtgateway twisted``:
TwistedClient on the epoll reactor; ``rtgateway asyncio``: AsyncioClient on
asyncio's loop), each against the reference ``websockets``: websockets'
asyncio client doing the same JSON-RPC by hand, with AsyncioClient's
connection options, in the same run (``bench/client_load.py`` has the
load side):

- pipelined calls: ``window`` ``sys.ping`` calls in flight on one
  connection, each answer sending the next; calls answered per second;
- events received: one subscriber of a reliable topic, fed by a publisher
  process that keeps at most ``window`` events published and not yet
  received (a closed loop: the gateway's send buffer never fills); events
  received per second;
- reconnect to resumed: through a netsim proxy, ``count`` times, both sides
  of the connection are reset; the time from the reset to the
  ``session.resume`` answer with ``resumed: true``, p50 and p99. The
  reconnect policy's first delay is ``--reconnect-delay`` (0 by default:
  the figure is the reconnect's own cost; a real policy adds its jittered
  wait).

Every measurement runs in a fresh process. By default the gateway (and the
publisher) run on the first CPU and the client under test alone on the
other, so that the client, the thing measured, has a core to itself;
``client CPU cores`` near 1 says it was the bottleneck, ``gateway CPU
cores`` near 1 that the gateway was.
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path
from typing import Any

from bench import topics
from bench.client_load import SLACK_S, client_main, publisher_main
from bench.gateway import BenchGateway
from bench.procstat import pin, split_cpus
from bench.report import case_result, every_run, percentile
from rtgateway.testing.netsim import NetSimProcess

SUMMARY = (
    "one rtgateway.client (Twisted and asyncio) against raw websockets: "
    "pipelined calls/s, events received/s, reconnect-to-resumed p50/p99"
)
KINDS = {
    "rtgateway twisted": "twisted",
    "rtgateway asyncio": "asyncio",
    "websockets": "websockets",
}
REFERENCE = "websockets"
DEFAULT_DURATION = 5.0
DEFAULT_WINDOW = 100
DEFAULT_RECONNECTS = 200
#: A count bound per measurement that no client here can reach in time.
MAX_MESSAGES_PER_SECOND = 1_000_000
TEXT_BYTES = 100

THROUGHPUT = {
    "per_client_cpu_s": "per client CPU second",
    "client_cpu_us_per_msg": "client CPU us/msg",
    "client_cpu_cores": "client CPU cores",
    "gateway_cpu_us_per_msg": "gateway CPU us/msg",
    "gateway_cpu_cores": "gateway CPU cores",
}
PING_FIGURES = {"messages_per_s": "calls/s", **THROUGHPUT}
EVENT_FIGURES = {
    "messages_per_s": "events/s",
    **THROUGHPUT,
    "publisher_cpu_cores": "publisher CPU cores",
}
RECONNECT_FIGURES = {
    "resumed_p50_ms": "drop to resumed p50 ms",
    "resumed_p99_ms": "drop to resumed p99 ms",
    "resumed_max_ms": "drop to resumed max ms",
    "drop_call_p50_ms": "reset call p50 ms",
    "resumed_fraction": "resumed fraction",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        help="calls in flight, and events published ahead of the client "
        f"(default {DEFAULT_WINDOW})",
    )
    parser.add_argument(
        "--reconnects",
        type=int,
        default=None,
        help=f"forced drops per client and run (default {DEFAULT_RECONNECTS})",
    )
    parser.add_argument(
        "--reconnect-delay",
        type=float,
        default=0.0,
        help="the reconnect policy's initial_s (default 0: reconnect at once)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="leave the gateway, the publisher and the client unpinned",
    )


class Runner:
    """Starts measurement processes and collects their figures."""

    def __init__(self, options: argparse.Namespace, gateway: BenchGateway) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.gateway = gateway
        self.duration = options.duration or (0.3 if options.tiny else DEFAULT_DURATION)
        self.warmup = min(1.0, self.duration / 4)
        self.window = options.window
        self.reconnects = options.reconnects or (
            5 if options.tiny else DEFAULT_RECONNECTS
        )
        self.reconnect_delay = options.reconnect_delay
        cpus = None if options.no_pin else split_cpus()
        self.server_cpus, self.client_cpus = cpus if cpus else (None, None)
        if self.server_cpus:
            pin(gateway.pid, self.server_cpus)
        self.players = 0

    def token(self) -> str:
        from rtgateway.config import parse_config
        from rtgateway.tokens import mint_token

        self.players += 1
        auth = parse_config(
            {"auth": {"secret": self.gateway.secret}},
            source="<bench>",
            base_dir=Path.cwd(),
            environ={},
        ).auth
        return mint_token(auth, f"client{self.players}")

    def _job(self, kind: str, mode: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "mode": mode,
            "url": self.gateway.url,
            "token": self.token(),
            "window": self.window,
            "warmup_s": self.warmup,
            "duration_s": self.duration,
            "max_messages": int(
                (self.warmup + self.duration) * MAX_MESSAGES_PER_SECOND
            ),
            "lifetime_s": self.warmup + self.duration + SLACK_S,
            "reconnect_delay_s": self.reconnect_delay,
            "cpus": self.client_cpus,
            "pids": {"gateway": self.gateway.pid},
            **extra,
        }

    def _collect(self, process: Any, replies: Any, timeout: float) -> dict[str, Any]:
        if not replies.poll(timeout):
            process.kill()
            raise RuntimeError("a measurement process did not answer in time")
        try:
            reply = replies.recv()
        except EOFError:
            process.join(10.0)
            raise RuntimeError(
                f"a measurement process exited without figures ({process.exitcode})"
            ) from None
        process.join(10.0)
        if process.is_alive():
            process.kill()
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def _client(self, job: dict[str, Any], credit_pipe: Any = None) -> dict[str, Any]:
        replies, reply_pipe = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=client_main, args=(job, credit_pipe, reply_pipe), daemon=True
        )
        process.start()
        reply_pipe.close()
        return self._collect(process, replies, job["lifetime_s"] + SLACK_S)

    def ping(self, kind: str) -> dict[str, Any]:
        return self._client(self._job(kind, "ping"))

    def events(self, kind: str, topic: str) -> dict[str, Any]:
        credits_in, credits_out = self.context.Pipe(duplex=False)
        replies, reply_pipe = self.context.Pipe(duplex=False)
        job = self._job(kind, "events", topic=topic, type=topics.RELIABLE_TYPE)
        publisher_job = {
            **job,
            "token": self.token(),
            "text_bytes": TEXT_BYTES,
            "cpus": self.server_cpus,
        }
        publisher = self.context.Process(
            target=publisher_main,
            args=(publisher_job, credits_in, reply_pipe),
            daemon=True,
        )
        publisher.start()
        reply_pipe.close()
        job["pids"] = {**job["pids"], "publisher": publisher.pid}
        try:
            figures = self._client(job, credits_out)
        finally:
            credits_out.close()
        published = self._collect(publisher, replies, SLACK_S)
        figures["errors"] += published["publish_errors"]
        figures["published"] = published["published"]
        return figures

    def reconnect(self, kind: str, topic: str, proxy: NetSimProcess) -> dict[str, Any]:
        job = self._job(
            kind,
            "reconnect",
            topic=topic,
            url=f"ws://127.0.0.1:{proxy.port}/ws",
            control=proxy.control_url,
            count=self.reconnects,
            lifetime_s=self.reconnects * 2.0 + SLACK_S,
        )
        reply = self._client(job)
        samples = sorted(reply["samples"])
        return {
            "resumed_p50_ms": percentile(samples, 0.5) * 1000,
            "resumed_p99_ms": percentile(samples, 0.99) * 1000,
            "resumed_max_ms": (samples[-1] if samples else 0.0) * 1000,
            "drop_call_p50_ms": percentile(sorted(reply["drop_calls"]), 0.5) * 1000,
            "resumed_fraction": len(samples) / max(1, self.reconnects),
            "resumed": len(samples),
            "errors": reply["errors"],
        }


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every measurement on every kind of client, ``--runs`` times, on one gateway."""
    gateway = BenchGateway(
        workdir, reactor=options.reactor, overrides=topics.overrides()
    ).start()
    proxy = NetSimProcess("127.0.0.1", gateway.port).start()
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        case: {target: [] for target in KINDS}
        for case in ("ping", "events", "reconnect")
    }
    try:
        runner = Runner(options, gateway)
        for number in range(options.runs):
            for target, kind in KINDS.items():
                label = f"run {number + 1}/{options.runs}: {target}"
                print(f"{label}, pipelined calls", flush=True)
                runs["ping"][target].append(runner.ping(kind))
                print(f"{label}, events", flush=True)
                topic = f"{topics.NAMESPACE}.client-{number}-{kind}"
                runs["events"][target].append(runner.events(kind, topic))
                print(f"{label}, reconnects", flush=True)
                topic = f"{topics.NAMESPACE}.resume-{number}-{kind}"
                runs["reconnect"][target].append(runner.reconnect(kind, topic, proxy))
    finally:
        proxy.stop()
        gateway.stop()
    window = options.window
    params = {"window": window, "duration_s": runner.duration}
    cases = [
        case_result(
            f"pipelined sys.ping, window {window}",
            PING_FIGURES,
            runs["ping"],
            reference=REFERENCE,
            params=params,
        ),
        case_result(
            f"events received, window {window}",
            EVENT_FIGURES,
            runs["events"],
            reference=REFERENCE,
            params={**params, "text_bytes": TEXT_BYTES},
        ),
        case_result(
            f"reconnect to resumed, {runner.reconnects} drops",
            RECONNECT_FIGURES,
            runs["reconnect"],
            reference=REFERENCE,
            params={
                "drops": runner.reconnects,
                "reconnect_delay_s": options.reconnect_delay,
            },
        ),
    ]
    errors = sum(run["errors"] for run in every_run(cases))
    pinned = (
        f"gateway and publisher on CPU {sorted(runner.server_cpus)}, the client "
        f"on {sorted(runner.client_cpus)}"
        if runner.server_cpus
        else "no process pinned"
    )
    return {
        "cases": cases,
        "notes": [
            f"one gateway (memory backend, reactor {options.reactor}); {pinned}; "
            f"{runner.duration:g} s per measurement after a {runner.warmup:g} s "
            "warm-up; every measurement in a fresh client process",
            "websockets: websockets' asyncio client with AsyncioClient's options, "
            "JSON-RPC by hand with orjson; rtgateway asyncio on the same loop",
            "reconnects: the netsim proxy resets both sides; measured from the "
            "reset call (an HTTP request to the proxy: 'reset call' is its "
            "round trip) to the session.resume answer",
            f"{errors} errors (failed calls, lost or repeated events, failed "
            "resumes) in all runs",
        ],
    }
