"""The load side of the ``fanout``, ``resume`` and ``presence`` scenarios
(``state`` has its own, in :mod:`bench.state_load`, registered here too).

Each handler here is a command of a load process (see
:mod:`bench.loadgen`): the scenario sends it with
:meth:`~bench.loadgen.LoadGenerators.command` after ``open``, and the
handler works on the process's connections, in plan order (connection
``i`` is player ``p<first_player + i>``). Every loop is bounded by a count
and a deadline, as everywhere in the load generator.

Latency here is one process's ``time.time()`` at sending less another's
(or the same one's) at receipt: the sender puts its clock in the message,
and all processes run on this one machine, on one clock.

The closed loop (:func:`closed_loop`) is shared by fan-out and presence:
one connection (the first) publishes, every other one receives; a
publication is complete when every receiver has it, and at most ``window``
publications are incomplete at a time (a window of 1: the next is sent
when everybody got the previous one). The publisher and every receiver are
in the same process, so completion needs no coordination between
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from typing import TYPE_CHECKING, Any

import orjson

from bench.state_load import HANDLERS as STATE_HANDLERS

if TYPE_CHECKING:
    from bench.worker import Worker as _Worker
    from bench.wsclient import ClientConnection

#: How long a closed loop waits without any progress before it gives up.
STALL_S = 5.0
#: After the last expected replayed event, how long a resume keeps listening
#: for duplicates or strays (not counted in its time).
GRACE_S = 0.2
#: Requests one process keeps in flight while setting up its connections.
CALL_CONCURRENCY = 500
#: The epoch the baseline's messages carry: as long as the gateway's.
FAKE_EPOCH = "0123456789ab"


def text_of(size: int) -> str:
    """A chat line of ``size`` characters."""
    line = "the quick brown fox jumps over the lazy dog; "
    return (line * (size // len(line) + 1))[:size]


def _select(worker: _Worker, which: str) -> list[ClientConnection]:
    connections = worker.connections
    if which == "all":
        return list(connections)
    if which == "first":
        return connections[:1]
    if which == "rest":
        return connections[1:]
    raise ValueError(f"unknown selection {which!r}")


async def calls(
    worker: _Worker,
    *,
    method: str,
    params: Any,
    which: str = "all",
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Every selected connection calls ``method`` with ``params``, at most
    :data:`CALL_CONCURRENCY` at a time; how many succeeded."""
    gate = asyncio.Semaphore(CALL_CONCURRENCY)
    errors: list[Any] = []
    ok = 0

    async def one(connection: ClientConnection) -> None:
        nonlocal ok
        async with gate:
            try:
                reply = await asyncio.wait_for(connection.call(method, params), timeout)
            except (ConnectionError, TimeoutError) as error:
                errors.append(f"{type(error).__name__}: {error}")
                return
            if "result" in reply:
                ok += 1
            else:
                errors.append(reply.get("error"))

    started = time.monotonic()
    await asyncio.gather(*(one(c) for c in _select(worker, which)))
    return {
        "ok": ok,
        "failed": len(errors),
        "error_samples": errors[:3],
        "seconds": time.monotonic() - started,
    }


# -- the closed loop: fan-out and presence ----------------------------------------


def _publication(
    kind: str,
    *,
    seq: int,
    now: float,
    topic: str,
    type_name: str,
    text: str,
    player: str,
) -> dict[str, Any]:
    """What the publisher sends for publication ``seq``.

    ``pubsub``: a ``pubsub.publish`` request; ``presence``: a
    ``presence.set`` request, alternating the status, with the sequence and
    time in ``activity``; ``raw-pubsub`` and ``raw-presence``: for the
    baseline, which sends what it receives to everybody else, the
    notification a gateway subscriber would receive, of the same shape and
    size.
    """
    if kind == "pubsub":
        return {
            "jsonrpc": "2.0",
            "method": "pubsub.publish",
            "params": {
                "topic": topic,
                "type": type_name,
                "data": {"text": text, "seq": seq, "t": now},
            },
            "id": seq,
        }
    if kind == "presence":
        return {
            "jsonrpc": "2.0",
            "method": "presence.set",
            "params": {
                "status": "away" if seq % 2 else "online",
                "activity": f"{seq}:{now!r}",
            },
            "id": seq,
        }
    params: dict[str, Any]
    if kind == "raw-pubsub":
        params = {
            "topic": topic,
            "data": {"text": text, "seq": seq, "t": now},
            "ts_ms": int(now * 1000),
            "offset": seq,
            "epoch": FAKE_EPOCH,
            "from": player,
        }
    elif kind == "raw-presence":
        params = {
            "topic": topic,
            "data": {
                "player_id": player,
                "status": "away" if seq % 2 else "online",
                "last_seen_ms": int(now * 1000),
                "zone": None,
                "region": None,
                "activity": f"{seq}:{now!r}",
            },
            "ts_ms": int(now * 1000),
        }
    else:
        raise ValueError(f"unknown publication kind {kind!r}")
    return {"jsonrpc": "2.0", "method": type_name, "params": params}


def _stamp(kind: str, params: dict[str, Any]) -> tuple[int, float]:
    """(sequence, sending time) of a received publication."""
    data = params["data"]
    if kind.endswith("presence"):
        seq, _, sent = data["activity"].partition(":")
        return int(seq), float(sent)
    return data["seq"], data["t"]


async def closed_loop(
    worker: _Worker,
    *,
    kind: str,
    topic: str,
    type_name: str,
    count: int,
    duration: float,
    window: int = 1,
    text_bytes: int = 100,
) -> dict[str, Any]:
    """Publish from the first connection until ``count`` publications or
    ``duration`` seconds, keeping ``window`` incomplete; every other
    connection receives and times each one.

    ``errors`` counts publications refused, receipts out of sequence (a
    sequence number or, on reliable topics, an offset that is not the
    previous one plus one), and receipts missing at the end.
    """
    connections = worker.connections
    publisher, receivers = connections[0], connections[1:]
    if not receivers:
        raise RuntimeError("a closed loop needs receivers")
    state = worker.state.setdefault("closed_loop", {"seq": 0})
    first_seq = state["seq"] + 1
    expected = len(receivers)
    text = text_of(text_bytes)
    player = f"p{worker.plan.first_player}"
    latencies = array("d")
    pending: dict[int, int] = {}
    counters = {"deliveries": 0, "order_errors": 0, "refused": 0, "bytes": 0}
    last_seq = [first_seq - 1] * expected
    last_offset: list[int | None] = [None] * expected
    progress = {"sent": 0, "completed": 0, "last": 0.0, "first_send": 0.0}
    stop_at = time.time() + duration
    finished = asyncio.get_running_loop().create_future()

    def publish() -> None:
        seq = first_seq + progress["sent"]
        now = time.time()
        if not progress["sent"]:
            progress["first_send"] = now
        progress["sent"] += 1
        pending[seq] = expected
        publisher.send(
            _publication(
                kind,
                seq=seq,
                now=now,
                topic=topic,
                type_name=type_name,
                text=text,
                player=player,
            )
        )

    def may_send() -> bool:
        return progress["sent"] < count and time.time() < stop_at

    def completed(now: float) -> None:
        progress["completed"] += 1
        progress["last"] = now
        if may_send():
            publish()
        elif not pending and not finished.done():
            finished.set_result(None)

    def receiver(index: int):
        def on_event(document: Any, now: float) -> None:
            if type(document) is not dict or document.get("method") != type_name:
                return
            params = document["params"]
            try:
                seq, sent = _stamp(kind, params)
            except (KeyError, TypeError, ValueError):
                counters["order_errors"] += 1
                return
            if seq != last_seq[index] + 1:
                counters["order_errors"] += 1
            last_seq[index] = seq
            offset = params.get("offset")
            if offset is not None:
                previous = last_offset[index]
                if previous is not None and offset != previous + 1:
                    counters["order_errors"] += 1
                last_offset[index] = offset
            if not counters["deliveries"]:
                counters["bytes"] = len(orjson.dumps(document))
            counters["deliveries"] += 1
            latencies.append(now - sent)
            left = pending.get(seq)
            if left is None:
                return
            if left == 1:
                del pending[seq]
                completed(now)
            else:
                pending[seq] = left - 1

        return on_event

    def publisher_event(document: Any, now: float) -> None:
        if type(document) is dict and "error" in document:
            counters["refused"] += 1

    for index, connection in enumerate(receivers):
        connection.on_event = receiver(index)
    publisher.on_event = publisher_event
    for _ in range(max(1, window)):
        if may_send():
            publish()
    watched = progress["completed"]
    idle_since = time.monotonic()
    while not finished.done():
        await asyncio.sleep(0.05)
        if progress["completed"] != watched:
            watched, idle_since = progress["completed"], time.monotonic()
        elif time.monotonic() - idle_since > STALL_S:
            break
        if not pending and not may_send() and not finished.done():
            finished.set_result(None)
    for connection in connections:
        connection.on_event = None
    state["seq"] = first_seq + progress["sent"] - 1
    missing = sum(pending.values())
    elapsed = (progress["last"] or time.time()) - progress["first_send"]
    return {
        "published": progress["sent"],
        "completed": progress["completed"],
        "deliveries": counters["deliveries"],
        "receivers": expected,
        "elapsed": max(elapsed, 1e-9),
        "latencies": latencies,
        "errors": counters["order_errors"] + counters["refused"] + missing,
        "refused": counters["refused"],
        "missing": missing,
        "stalled": not finished.done(),
        "message_bytes": counters["bytes"],
    }


# -- resume ------------------------------------------------------------------------


async def resume_prepare(
    worker: _Worker, *, topic: str, timeout: float = 30.0
) -> dict[str, Any]:
    """The first connection subscribes to ``topic``, keeps its position and
    resume token, then drops its connection (a TCP reset, as a lost
    network looks to the gateway)."""
    player = worker.connections[0]
    reply = await asyncio.wait_for(
        player.call("pubsub.subscribe", {"topic": topic}), timeout
    )
    if "result" not in reply:
        raise RuntimeError(f"subscribe refused: {reply.get('error')}")
    result = reply["result"]
    worker.state["resume"] = {
        "token": player.welcome["params"]["resume_token"],
        "offset": result["offset"],
        "epoch": result["epoch"],
    }
    player.abort()
    return {"offset": result["offset"], "epoch": result["epoch"]}


async def publish_many(
    worker: _Worker,
    *,
    index: int,
    topic: str,
    type_name: str,
    count: int,
    window: int = 100,
    text_bytes: int = 100,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Connection ``index`` publishes ``count`` events, ``window`` requests
    in flight; the offsets the gateway gave them."""
    publisher = worker.connections[index]
    text = text_of(text_bytes)
    deadline = time.monotonic() + timeout
    offsets: list[int] = []
    errors: list[Any] = []
    sent = 0

    async def lane() -> None:
        nonlocal sent
        while sent < count and time.monotonic() < deadline:
            sent += 1
            data = {"text": text, "seq": sent, "t": time.time()}
            reply = await asyncio.wait_for(
                publisher.call(
                    "pubsub.publish",
                    {"topic": topic, "type": type_name, "data": data},
                ),
                max(0.0, deadline - time.monotonic()),
            )
            if "result" in reply and "offset" in reply["result"]:
                offsets.append(reply["result"]["offset"])
            else:
                errors.append(reply.get("error"))

    started = time.monotonic()
    await asyncio.gather(*(lane() for _ in range(window)))
    return {
        "published": len(offsets),
        "errors": count - len(offsets),
        "error_samples": errors[:3],
        "first_offset": min(offsets, default=0),
        "last_offset": max(offsets, default=0),
        "seconds": time.monotonic() - started,
    }


async def reconnect(
    worker: _Worker, *, url_index: int, player_index: int = 0, timeout: float = 30.0
) -> dict[str, Any]:
    """Open a new connection for the player of connection ``player_index``,
    to ``urls[url_index]``, for :func:`resume`."""
    connection, error = await worker.connect(
        worker.plan.urls[url_index], worker.tokens[player_index], timeout
    )
    if error is not None:
        raise RuntimeError(f"reconnecting failed: {error}")
    worker.state["resume"]["connection"] = connection
    return {"gateway_id": connection.welcome["params"]["gateway_id"]}


async def resume(
    worker: _Worker,
    *,
    topic: str,
    type_name: str,
    expected: int,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Call ``session.resume`` with the position kept by
    :func:`resume_prepare` on the connection :func:`reconnect` opened, and
    time it until the ``expected`` events after that position have all
    arrived. Each offset must come exactly once, in order: anything else
    (and anything after the last, within :data:`GRACE_S`) is an error."""
    saved = worker.state["resume"]
    connection: ClientConnection = saved["connection"]
    first = saved["offset"] + 1
    last = saved["offset"] + expected
    seen = {"next": first, "received": 0, "errors": 0, "done_at": 0.0}
    done = asyncio.get_running_loop().create_future()

    def on_event(document: Any, now: float) -> None:
        if type(document) is not dict or document.get("method") != type_name:
            return
        params = document["params"]
        if params.get("topic") != topic:
            return
        seen["received"] += 1
        if (
            params.get("offset") != seen["next"]
            or params.get("epoch") != saved["epoch"]
        ):
            seen["errors"] += 1
            return
        seen["next"] += 1
        if seen["next"] > last and not done.done():
            seen["done_at"] = now
            done.set_result(None)

    connection.on_event = on_event
    params = {
        "resume_token": saved["token"],
        "positions": {topic: {"offset": saved["offset"], "epoch": saved["epoch"]}},
    }
    started = time.time()
    reply = await asyncio.wait_for(connection.call("session.resume", params), timeout)
    replied = connection.replied_at
    if "result" not in reply:
        raise RuntimeError(f"session.resume refused: {reply.get('error')}")
    recovered = bool(reply["result"]["recovered"].get(topic))
    if expected and recovered:
        # Until the last event, or the server closes the connection.
        until = time.monotonic() + timeout
        while not done.done() and connection.open and time.monotonic() < until:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), 0.05)
    if connection.open:
        await asyncio.sleep(GRACE_S)
    connection.on_event = None
    connection.abort()
    missing = last - seen["next"] + 1
    return {
        "close_code": connection.close_code,
        "resume_s": (seen["done_at"] or time.time()) - started,
        "reply_s": replied - started,
        "received": seen["received"],
        "errors": seen["errors"] + missing + (0 if recovered else 1),
        "missing": missing,
        "recovered": recovered,
    }


# -- zones ------------------------------------------------------------------------


async def zone_walk(
    worker: _Worker,
    *,
    zone: str,
    limit: int,
    page_calls: int,
    walks: int,
    expected: int,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """The first connection times ``page_calls`` calls of the zone's first
    page, then ``walks`` walks through every page, checking that a walk
    lists each of the ``expected`` players exactly once, in order. Times
    run from sending to the answer's arrival, one call at a time."""
    connection = worker.connections[0]
    deadline = time.monotonic() + timeout
    max_pages = expected // max(limit, 1) + 10

    async def page(cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"zone": zone, "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        reply = await asyncio.wait_for(
            connection.call("presence.zone", params),
            max(0.0, deadline - time.monotonic()),
        )
        if "result" not in reply:
            raise RuntimeError(f"presence.zone refused: {reply.get('error')}")
        return reply["result"]

    page_s = []
    count = 0
    for _ in range(page_calls):
        started = time.time()
        result = await page(None)
        page_s.append(connection.replied_at - started)
        count = result["count"]
    walk_s = []
    errors = 0
    pages = 0
    for _ in range(walks):
        listed: list[str] = []
        cursor = None
        pages = 0
        started = time.time()
        while pages < max_pages:
            result = await page(cursor)
            pages += 1
            listed.extend(result["players"])
            cursor = result["cursor"]
            if cursor is None:
                break
        walk_s.append(connection.replied_at - started)
        errors += abs(len(listed) - expected) + (len(listed) - len(set(listed)))
        errors += int(listed != sorted(listed))
    errors += abs(count - expected)
    return {
        "page_s": page_s,
        "walk_s": walk_s,
        "pages": pages,
        "count": count,
        "errors": errors,
    }


HANDLERS = {
    "calls": calls,
    "closed_loop": closed_loop,
    "resume_prepare": resume_prepare,
    "publish_many": publish_many,
    "reconnect": reconnect,
    "resume": resume,
    "zone_walk": zone_walk,
}

HANDLERS |= STATE_HANDLERS

# The soak's commands live in bench.soak_load, as the state scenario's live
# in bench.state_load.
from bench.soak_load import HANDLERS as SOAK_HANDLERS  # noqa: E402

HANDLERS |= SOAK_HANDLERS
