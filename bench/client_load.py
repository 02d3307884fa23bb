"""The load side of the ``client`` scenario: the client under test, in a
process of its own, and the publisher that feeds it events.

One measurement is one spawned process running one *kind* of client:

``twisted``
    ``rtgateway.client``'s TwistedClient on Twisted's epoll reactor.
``asyncio``
    ``rtgateway.client``'s AsyncioClient on asyncio's own event loop.
``websockets``
    The reference: websockets' asyncio client on the same loop, with the
    same connection options as AsyncioClient, doing the same JSON-RPC by
    hand with orjson (ids matched in a dict, nothing else): what an
    application gets without the SDK.

and one *mode*:

``ping``
    ``window`` ``sys.ping`` requests in flight; each answer sends the next.
``events``
    Subscribed to a reliable topic, counting the events it receives. A
    publisher process (:func:`publisher_main`, the load generator's
    sans-io client on uvloop) keeps at most ``window`` events published and
    not yet received: the client reports what it received over a pipe every
    ``window // 4`` events, so neither a slow client nor a fast publisher
    fills the gateway's send buffer (which would close the connection
    4008).
``reconnect``
    Connected through a :class:`~rtgateway.testing.netsim.NetSimProcess`
    proxy and subscribed to a reliable topic: ``count`` times, the proxy
    resets both sides of the connection and the time from the reset call
    to the ``session.resume`` answer (``resumed: true``) is taken.

The rates are counted over a timed window after a warm-up; CPU seconds of
the client (its own), the gateway and the publisher (read from ``/proc``)
are taken at both ends of the window by the client process itself.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from twisted.python.failure import Failure

from bench.procstat import cpu_seconds, process_cpu_seconds

#: Longest a measurement process may live, beyond its own timings.
SLACK_S = 60.0
#: Longest wait for one resume before it counts as failed.
RESUME_TIMEOUT_S = 10.0
#: Pause after a resume before the next reset: the gateway settles.
SETTLE_S = 0.02
SUBPROTOCOL = "rtgw.v1.json"


class Meter:
    """CPU and counts at both ends of the measured window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start: dict[str, float] = {}
        self.figures: dict[str, float] = {}

    def _read(self, count: int) -> dict[str, float]:
        read = {"count": float(count), "wall": time.monotonic()}
        read["client"] = process_cpu_seconds()
        for name, pid in self._pids.items():
            try:
                read[name] = cpu_seconds(pid)
            except OSError:
                read[name] = 0.0
        return read

    def begin(self, count: int) -> None:
        self._start = self._read(count)

    def end(self, count: int) -> None:
        end = self._read(count)
        wall = end["wall"] - self._start["wall"]
        messages = end["count"] - self._start["count"]
        self.figures = {"messages_per_s": messages / wall, "messages": messages}
        for name in ("client", *self._pids):
            used = end[name] - self._start[name]
            self.figures[f"{name}_cpu_cores"] = used / wall
            self.figures[f"{name}_cpu_us_per_msg"] = used / max(messages, 1) * 1e6
        self.figures["per_client_cpu_s"] = messages / max(
            end["client"] - self._start["client"], 1e-9
        )


class Credits:
    """Tells the publisher how many events the client has received."""

    def __init__(self, pipe: Connection | None, window: int) -> None:
        self._pipe = pipe
        self._every = max(1, window // 4)
        self.received = 0

    def start(self) -> None:
        if self._pipe is not None:
            self._pipe.send_bytes(b"0")

    def one(self) -> None:
        self.received += 1
        if self._pipe is not None and self.received % self._every == 0:
            self._pipe.send_bytes(str(self.received).encode())

    def stop(self) -> None:
        if self._pipe is not None:
            self._pipe.send_bytes(b"stop")


# -- the rtgateway client, on either transport ---------------------------------


class TwistedDriver:
    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def client(self, url: str, token: str, **options: Any) -> Any:
        from rtgateway.client import ClientOptions
        from rtgateway.client.twisted_transport import TwistedClient

        return TwistedClient(url, token, ClientOptions(**options), reactor=self.reactor)

    async def sleep(self, seconds: float) -> None:
        from twisted.internet import task

        await task.deferLater(self.reactor, seconds, lambda: None)

    async def in_thread(self, function: Callable[[], Any]) -> Any:
        from twisted.internet import threads

        return await threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), function
        )

    @staticmethod
    def then(result: Any, ok: Callable[[Any], None], failed: Callable[[Any], None]):
        result.addCallbacks(ok, failed)


class AsyncioDriver:
    def client(self, url: str, token: str, **options: Any) -> Any:
        from rtgateway.client import ClientOptions
        from rtgateway.client.asyncio_transport import AsyncioClient

        return AsyncioClient(url, token, ClientOptions(**options))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def in_thread(self, function: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(function)

    @staticmethod
    def then(result: Any, ok: Callable[[Any], None], failed: Callable[[Any], None]):
        def done(future: asyncio.Future[Any]) -> None:
            if future.exception() is not None:
                failed(future.exception())
            else:
                ok(future.result())

        result.add_done_callback(done)


def _options(job: dict[str, Any]) -> dict[str, Any]:
    from rtgateway.client import ReconnectPolicy

    return {
        "ping_interval_s": 0,
        "reconnect": ReconnectPolicy(
            initial_s=job.get("reconnect_delay_s", 0.0), max_delay_s=1.0
        ),
    }


async def sdk_ping(d: Any, job: dict[str, Any], meter: Meter) -> dict[str, Any]:
    client = d.client(job["url"], job["token"], **_options(job))
    await client.start()
    counts = {"answered": 0, "errors": 0, "sent": 0}
    sending = True
    limit = job["max_messages"]

    def answered(_result: Any) -> None:
        counts["answered"] += 1
        if sending and counts["sent"] < limit:
            send()

    def failed(_error: Any) -> None:
        counts["errors"] += 1

    def send() -> None:
        counts["sent"] += 1
        d.then(client.call("sys.ping", {}), answered, failed)

    for _ in range(job["window"]):
        send()
    await d.sleep(job["warmup_s"])
    meter.begin(counts["answered"])
    await d.sleep(job["duration_s"])
    meter.end(counts["answered"])
    sending = False
    await _drained(d, lambda: counts["answered"] + counts["errors"] >= counts["sent"])
    await client.close()
    return {"errors": counts["errors"]}


async def sdk_events(
    d: Any, job: dict[str, Any], meter: Meter, credits: Credits
) -> dict[str, Any]:
    client = d.client(job["url"], job["token"], **_options(job))
    client.on(job["type"], lambda _event: credits.one())
    await client.start()
    await client.subscribe(job["topic"])
    credits.start()
    await d.sleep(job["warmup_s"])
    meter.begin(credits.received)
    await d.sleep(job["duration_s"])
    meter.end(credits.received)
    credits.stop()
    stats = client.stats()
    await client.close()
    return {
        "errors": stats.get("duplicates_dropped", 0) + stats.get("handler_errors", 0)
    }


async def sdk_reconnect(d: Any, job: dict[str, Any]) -> dict[str, Any]:
    from rtgateway.testing.netsim import NetSimControl

    proxy = NetSimControl(job["control"])
    client = d.client(job["url"], job["token"], **_options(job))
    opened: list[float] = []
    client.on(
        "client.state",
        lambda change: change.state == "open" and opened.append(time.monotonic()),
    )
    await client.start()
    await client.subscribe(job["topic"])
    samples, drop_calls, failures = [], [], 0
    for _ in range(job["count"]):
        before, resumes = len(opened), client.stats()["resumes"]
        dropped_at = time.monotonic()
        returned = await d.in_thread(lambda: _timed(proxy.drop_all))
        drop_calls.append(returned - dropped_at)
        deadline = dropped_at + RESUME_TIMEOUT_S
        while len(opened) == before and time.monotonic() < deadline:
            await d.sleep(0.001)
        if len(opened) > before and client.stats()["resumes"] == resumes + 1:
            samples.append(opened[before] - dropped_at)
        else:
            failures += 1
        await d.sleep(SETTLE_S)
    await client.close()
    return {"samples": samples, "drop_calls": drop_calls, "errors": failures}


async def _drained(d: Any, done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await d.sleep(0.01)


# -- the reference: websockets by hand ---------------------------------------------


async def _ws_connect(url: str, token: str) -> Any:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    # The options AsyncioClient connects with.
    ws = await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        open_timeout=10,
        close_timeout=5,
        max_size=None,
        ping_interval=None,
    )
    return ws


class RawSession:
    """One websockets connection speaking JSON-RPC by hand."""

    def __init__(self, ws: Any) -> None:
        import orjson

        self.ws = ws
        self.dumps, self.loads = orjson.dumps, orjson.loads
        self.next_id = 0

    async def send(self, method: str, params: Any) -> int:
        self.next_id += 1
        document = {"jsonrpc": "2.0", "method": method, "params": params}
        document["id"] = self.next_id
        await self.ws.send(self.dumps(document), text=True)
        return self.next_id

    async def welcome(self) -> dict[str, Any]:
        while True:
            document = self.loads(await self.ws.recv(decode=False))
            if document.get("method") == "session.welcome":
                return document["params"]

    async def call(self, method: str, params: Any) -> Any:
        wanted = await self.send(method, params)
        while True:
            document = self.loads(await self.ws.recv(decode=False))
            if document.get("id") == wanted:
                if "error" in document:
                    raise RuntimeError(f"{method}: {document['error']}")
                return document["result"]


async def raw_ping(job: dict[str, Any], meter: Meter) -> dict[str, Any]:
    session = RawSession(await _ws_connect(job["url"], job["token"]))
    await session.welcome()
    counts = {"answered": 0, "errors": 0, "sent": 0}
    state = {"sending": True}
    limit = job["max_messages"]
    pending: set[int] = set()

    async def send() -> None:
        counts["sent"] += 1
        pending.add(await session.send("sys.ping", {}))

    async def read() -> None:
        while pending or state["sending"]:
            document = session.loads(await session.ws.recv(decode=False))
            if document.get("id") in pending:
                pending.discard(document["id"])
                if "result" in document:
                    counts["answered"] += 1
                else:
                    counts["errors"] += 1
                if state["sending"] and counts["sent"] < limit:
                    await send()

    for _ in range(job["window"]):
        await send()
    reader = asyncio.ensure_future(read())
    await asyncio.sleep(job["warmup_s"])
    meter.begin(counts["answered"])
    await asyncio.sleep(job["duration_s"])
    meter.end(counts["answered"])
    state["sending"] = False
    try:
        await asyncio.wait_for(reader, 10.0)
    except TimeoutError:
        counts["errors"] += len(pending)
    await session.ws.close()
    return {"errors": counts["errors"]}


async def raw_events(
    job: dict[str, Any], meter: Meter, credits: Credits
) -> dict[str, Any]:
    session = RawSession(await _ws_connect(job["url"], job["token"]))
    await session.welcome()
    await session.call("pubsub.subscribe", {"topic": job["topic"]})
    state = {"reading": True}

    async def read() -> None:
        loads, recv, wanted = session.loads, session.ws.recv, job["type"]
        while state["reading"]:
            document = loads(await recv(decode=False))
            if document.get("method") == wanted:
                credits.one()

    reader = asyncio.ensure_future(read())
    credits.start()
    await asyncio.sleep(job["warmup_s"])
    meter.begin(credits.received)
    await asyncio.sleep(job["duration_s"])
    meter.end(credits.received)
    credits.stop()
    state["reading"] = False
    reader.cancel()
    await session.ws.close()
    return {"errors": 0}


async def raw_reconnect(job: dict[str, Any]) -> dict[str, Any]:
    from websockets.exceptions import ConnectionClosed

    from rtgateway.testing.netsim import NetSimControl

    proxy = NetSimControl(job["control"])
    session = RawSession(await _ws_connect(job["url"], job["token"]))
    resume_token = (await session.welcome())["resume_token"]
    topic = job["topic"]
    result = await session.call("pubsub.subscribe", {"topic": topic})
    positions = {topic: {"offset": result["offset"], "epoch": result["epoch"]}}
    samples, drop_calls, failures = [], [], 0
    for _ in range(job["count"]):
        dropped_at = time.monotonic()
        drop = asyncio.ensure_future(asyncio.to_thread(_timed, proxy.drop_all))
        try:
            async with asyncio.timeout(RESUME_TIMEOUT_S):
                try:
                    while True:
                        await session.ws.recv(decode=False)
                except ConnectionClosed:
                    pass
                session = RawSession(await _ws_connect(job["url"], job["token"]))
                await session.welcome()
                resumed = await session.call(
                    "session.resume",
                    {"resume_token": resume_token, "positions": positions},
                )
            if resumed.get("resumed") is True:
                samples.append(time.monotonic() - dropped_at)
            else:
                failures += 1
        except (TimeoutError, OSError, RuntimeError, ConnectionClosed):
            failures += 1
        drop_calls.append(await drop - dropped_at)
        await asyncio.sleep(SETTLE_S)
    await session.ws.close()
    return {"samples": samples, "drop_calls": drop_calls, "errors": failures}


def _timed(function: Callable[[], Any]) -> float:
    """Call ``function``; when it returned (``time.monotonic()``)."""
    function()
    return time.monotonic()


# -- the processes ------------------------------------------------------------------


def client_main(
    job: dict[str, Any], credit_pipe: Connection | None, replies: Connection
) -> None:
    """One measurement of one kind of client; its figures go to ``replies``."""
    if job.get("cpus"):
        os.sched_setaffinity(0, job["cpus"])
    try:
        reply = _run_client(job, credit_pipe)
    except Exception as error:  # reported to the parent, which fails the run
        reply = {
            "error": f"{job['kind']} {job['mode']}: {type(error).__name__}: {error}"
        }
    replies.send(reply)


def _run_client(job: dict[str, Any], credit_pipe: Connection | None) -> dict[str, Any]:
    meter = Meter(job.get("pids", {}))
    credits = Credits(credit_pipe, job.get("window", 1))
    mode, kind = job["mode"], job["kind"]
    result: dict[str, Any]
    if kind == "twisted":
        from bench.reactors import install

        install("epoll")
        from twisted.internet import defer, reactor

        d = TwistedDriver(reactor)
        coroutine = {
            "ping": lambda: sdk_ping(d, job, meter),
            "events": lambda: sdk_events(d, job, meter, credits),
            "reconnect": lambda: sdk_reconnect(d, job),
        }[mode]
        outcome: list[Any] = []

        def finished(value: Any) -> None:
            outcome.append(value)
            reactor.stop()

        def main() -> None:
            done = defer.ensureDeferred(coroutine())
            done.addTimeout(job["lifetime_s"], reactor)
            done.addBoth(finished)

        reactor.callWhenRunning(main)
        reactor.run()
        if not outcome or isinstance(outcome[0], Failure):
            if outcome:
                outcome[0].raiseException()
            raise RuntimeError("the reactor stopped before the measurement ended")
        result = outcome[0]
    else:
        if kind == "asyncio":
            d2 = AsyncioDriver()
            coroutines = {
                "ping": lambda: sdk_ping(d2, job, meter),
                "events": lambda: sdk_events(d2, job, meter, credits),
                "reconnect": lambda: sdk_reconnect(d2, job),
            }
        else:
            coroutines = {
                "ping": lambda: raw_ping(job, meter),
                "events": lambda: raw_events(job, meter, credits),
                "reconnect": lambda: raw_reconnect(job),
            }
        result = asyncio.run(asyncio.wait_for(coroutines[mode](), job["lifetime_s"]))
    return {**meter.figures, **result}


def publisher_main(
    job: dict[str, Any], credit_pipe: Connection, replies: Connection
) -> None:
    """Publish events on ``job["topic"]``, at most ``window`` ahead of what
    the client reported received, until it says stop or the lifetime ends."""
    if job.get("cpus"):
        os.sched_setaffinity(0, job["cpus"])
    from bench.loadgen import _new_loop

    loop = _new_loop()
    try:
        reply = loop.run_until_complete(
            asyncio.wait_for(_publish(job, credit_pipe), job["lifetime_s"])
        )
    except Exception as error:  # reported to the parent, which fails the run
        reply = {"error": f"publisher: {type(error).__name__}: {error}"}
    finally:
        loop.close()
    replies.send(reply)


async def _publish(job: dict[str, Any], credit_pipe: Connection) -> dict[str, Any]:
    import orjson

    from bench.wsclient import ENCODINGS, ClientConnection

    loop = asyncio.get_running_loop()
    host, port = job["url"].split("/")[2].split(":")
    opened: asyncio.Future[str | None] = loop.create_future()
    connection = ClientConnection(job["url"], ENCODINGS["json"], job["token"], opened)
    await asyncio.wait_for(
        loop.create_connection(lambda: connection, host, int(port)), 10.0
    )
    error = await asyncio.wait_for(opened, 10.0)
    if error is not None:
        raise RuntimeError(f"could not connect: {error}")
    answers = {"ok": 0, "errors": 0}

    def answered(document: Any, _now: float) -> None:
        if type(document) is dict and "id" in document:
            answers["ok" if "result" in document else "errors"] += 1

    connection.on_event = answered
    text = "x" * job["text_bytes"]
    head = (
        orjson.dumps({"jsonrpc": "2.0", "method": "pubsub.publish"})[:-1]
        + b',"params":{"topic":'
        + orjson.dumps(job["topic"])
        + b',"type":'
    )
    head += orjson.dumps(job["type"]) + b',"data":{"text":' + orjson.dumps(text)
    window, limit = job["window"], job["max_messages"]
    state = {"published": 0, "received": -1, "stopped": False}
    stopped = loop.create_future()

    def publish_up_to_window() -> None:
        if state["received"] < 0:
            return
        allowed = min(state["received"] + window, limit)
        while state["published"] < allowed:
            state["published"] += 1
            seq = state["published"]
            connection.send_encoded(
                head + b',"seq":%d,"t":%r}},"id":%d}' % (seq, time.time(), seq)
            )

    def credit() -> None:
        try:
            while credit_pipe.poll():
                message = credit_pipe.recv_bytes()
                if message == b"stop":
                    if not stopped.done():
                        stopped.set_result(None)
                    return
                state["received"] = max(state["received"], int(message))
        except (EOFError, OSError):
            if not stopped.done():
                stopped.set_result(None)
            return
        publish_up_to_window()

    loop.add_reader(credit_pipe.fileno(), credit)
    started_cpu = process_cpu_seconds()
    try:
        await stopped
    finally:
        loop.remove_reader(credit_pipe.fileno())
        connection.abort()
    return {
        "published": state["published"],
        "publish_errors": answers["errors"],
        "cpu_s": process_cpu_seconds() - started_cpu,
    }
