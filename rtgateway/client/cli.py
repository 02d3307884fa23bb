"""``python -m rtgateway.client``: the client from a terminal.

Connects (with the same reconnect and resume as any client), subscribes to
``--sub`` topics, watches ``--watch`` players, joins ``--join`` a zone,
makes one ``--call``, and prints what happens as JSON, one object per line
on stdout: ``{"result": ...}`` or ``{"error": ...}`` for the call,
``{"event": type, "params": ...}`` for every event (the session's own
messages and state pushes excepted), ``{"stats": ...}``
every ``--every`` seconds in a zone. Connection changes go to stderr. It
runs until ``--duration`` is over, or after the call when there is nothing
to tail, or until interrupted.

Runs on Twisted (always installed with rtgateway); the token is ``--token``
or the ``RTGW_TOKEN`` environment variable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rtgateway.client.actions import ConnectionState, Event
from rtgateway.client.backoff import ReconnectPolicy
from rtgateway.client.errors import RemoteError
from rtgateway.client.options import ClientOptions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rtgateway.client",
        description="Connect to rtgateway, call, subscribe and tail events.",
    )
    parser.add_argument(
        "--url", action="append", required=True, help="gateway URL (repeat: a pool)"
    )
    parser.add_argument("--token", default=os.environ.get("RTGW_TOKEN"))
    parser.add_argument("--encoding", choices=("json", "cbor"), default="json")
    parser.add_argument("--sub", action="append", default=[], metavar="TOPIC")
    parser.add_argument("--watch", action="append", default=[], metavar="PLAYER")
    parser.add_argument("--join", metavar="ZONE", help="join a zone, print rates")
    parser.add_argument("--call", metavar="METHOD")
    parser.add_argument("--params", type=json.loads, default=None, metavar="JSON")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--every", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--max-attempts", type=int, default=None)
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token or RTGW_TOKEN is required")
    return args


def line(value: Any) -> None:
    sys.stdout.write(json.dumps(value, sort_keys=True) + "\n")
    sys.stdout.flush()


def zone_line(stats: dict[str, Any], entities: int) -> dict[str, Any]:
    """The ``--join`` report: state rates, mirror size and desyncs."""
    keys = (
        "state_messages_per_s",
        "messages_in_per_s",
        "bytes_in_per_s",
        "desyncs",
        "checks",
        "rtt_ms",
        "reconnects",
    )
    return {"stats": {**{k: stats[k] for k in keys}, "entities": entities}}


async def run(args: argparse.Namespace, reactor: Any) -> int:
    from twisted.internet import task

    from rtgateway.client.twisted_transport import TwistedClient

    options = ClientOptions(
        encoding=args.encoding,
        reconnect=ReconnectPolicy(max_attempts=args.max_attempts),
    )
    client = TwistedClient(args.url, args.token, options, reactor=reactor)

    def show_state(change: ConnectionState) -> None:
        sys.stderr.write(json.dumps({"state": change.state, **_state(change)}) + "\n")

    client.on("client.state", show_state)
    client.on("*", _printer)
    client.on("client.lost", lambda topic, why: line({"lost": topic, "reason": why}))
    await client.start()
    status = 0
    for topic in args.sub:
        await client.subscribe(topic)
    if args.watch:
        line({"presence": await client.call("presence.watch", {"players": args.watch})})
    if args.join:
        line({"joined": await client.join(args.join)})
    if args.call:
        try:
            line({"result": await client.call(args.call, args.params)})
        except RemoteError as error:
            line(
                {
                    "error": {
                        "code": error.code,
                        "message": error.message,
                        "data": error.data,
                    }
                }
            )
            status = 1
    tailing = args.sub or args.watch or args.join
    if args.duration is not None or tailing:
        reporter = None
        if args.join:
            reporter = task.LoopingCall(
                lambda: line(zone_line(client.stats(), len(client.mirror)))
            )
            reporter.clock = reactor
            reporter.start(args.every, now=False)
        ended = client.when_closed()
        if args.duration is not None:
            timer = reactor.callLater(args.duration, client.close)
            ended.addBoth(_cancelling, timer)
        final = await ended
        if reporter is not None and reporter.running:
            reporter.stop()
        return status if final.code == 1000 else 2
    await client.close()
    return status


def _cancelling(result: Any, timer: Any) -> Any:
    if timer.active():
        timer.cancel()
    return result


def _state(change: ConnectionState) -> dict[str, Any]:
    fields = {"url": change.url, "attempt": change.attempt, "delay": change.delay}
    fields.update({"code": change.code, "reason": change.reason})
    return {key: value for key, value in fields.items() if value is not None}


#: Not tailed: the session's own messages (the welcome holds the resume
#: token, a secret) and state pushes, which come at the tick rate and which
#: --join reports as rates instead.
QUIET_PREFIXES = ("session.", "state.")


def _printer(event: Event) -> None:
    if not event.type.startswith(QUIET_PREFIXES):
        line({"event": event.type, "params": event.params})


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import defer, task

    args = parse_args(argv)

    def start(reactor: Any) -> defer.Deferred:
        d = defer.ensureDeferred(run(args, reactor))
        return d.addCallback(_exit_with)

    task.react(start)


def _exit_with(status: int) -> None:
    if status:
        raise SystemExit(status)
