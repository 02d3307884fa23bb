"""Load generator processes, and the handle a scenario drives them with.

Load runs in processes of its own, never in the server's, so that what the
server's CPU figure counts is the server's work. A scenario builds one
:class:`~bench.worker.Plan` per process and drives them all in lock step through
:class:`LoadGenerators`: ``open`` the connections, then ``ping`` (a timed
round-trip workload) or ``idle`` (connections held open, answering the
server's heartbeats), or one of the workloads of :mod:`bench.workloads`
(fan-out, resume, presence), then ``exit``. Every reply carries the CPU
time (user + system) the process spent on that command, so a scenario can
report what the load side cost next to what the server cost.

Every loop is bounded twice: by a count (connections, messages) and by a
deadline. A worker also exits by itself once ``Plan.lifetime_s`` has passed,
so no load process outlives a benchmark that crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import multiprocessing
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.procstat import process_cpu_seconds
from bench.worker import Plan
from bench.workloads import HANDLERS as WORKLOADS
from bench.wsclient import ENCODINGS, ClientConnection, Pinging

#: Most connections one load process holds: with its pipes, sockets and the
#: interpreter's own files it stays well under the 20,000 files a process
#: may open on the machines this suite was written for.
MAX_CONNECTIONS_PER_PROCESS = 8000
#: Handshakes one process keeps in flight while opening connections.
OPEN_CONCURRENCY = 100
#: How long outstanding requests may take to drain after a ping window.
DRAIN_S = 5.0


class LoadError(RuntimeError):
    """A load process failed, timed out or died."""


def plans(
    url: str,
    *,
    encoding: str,
    connections: int,
    processes: int,
    secret: str | None,
    lifetime_s: float,
    first_player: int = 0,
    more_urls: tuple[str, ...] = (),
) -> list[Plan]:
    """Spread ``connections`` evenly over at least ``processes`` processes.

    More processes are used when one would hold more than
    :data:`MAX_CONNECTIONS_PER_PROCESS` connections.
    """
    count = max(processes, -(-connections // MAX_CONNECTIONS_PER_PROCESS), 1)
    count = min(count, max(connections, 1))
    share, extra = divmod(connections, count)
    result = []
    for index in range(count):
        size = share + (index < extra)
        result.append(
            Plan(url, encoding, size, first_player, secret, lifetime_s, more_urls)
        )
        first_player += size
    return result


# -- the load process ------------------------------------------------------------


def client_loop() -> str:
    """The event loop load processes run on: uvloop when it is installed
    (it costs the client less per message), else asyncio's own."""
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def _new_loop() -> asyncio.AbstractEventLoop:
    if client_loop() == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def worker_main(plan: Plan, commands: Connection, replies: Connection) -> None:
    """Entry point of one load process.

    Commands and replies travel on two one-way pipes: the event loop makes
    the command pipe non-blocking to watch it, and a reply (latency samples
    included) may be far larger than a pipe holds at once.
    """
    loop = _new_loop()
    try:
        loop.run_until_complete(_Worker(plan, commands, replies).serve())
    finally:
        loop.close()
        commands.close()
        replies.close()


class _Worker:
    """Runs the commands its parent sends, one at a time, until ``exit``.

    What the workloads use of it is :class:`bench.worker.Worker`.
    """

    def __init__(self, plan: Plan, commands: Connection, replies: Connection) -> None:
        self._plan = plan
        self._command_pipe = commands
        self._replies = replies
        self._deadline = time.monotonic() + plan.lifetime_s
        self._connections: list[ClientConnection] = []
        self._tokens: list[str | None] = []
        self._commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: What workloads keep between commands (see :mod:`bench.workloads`).
        self.state: dict[str, Any] = {}

    async def serve(self) -> None:
        self._tokens = self._mint_tokens()
        loop = asyncio.get_running_loop()
        loop.add_reader(self._command_pipe.fileno(), self._read_commands)
        self._replies.send({"ready": True})
        handlers = {"open": self._open, "ping": self._ping, "idle": self._idle}
        handlers |= {
            name: functools.partial(handler, self)
            for name, handler in WORKLOADS.items()
        }
        try:
            while True:
                remaining = self._deadline - time.monotonic()
                try:
                    command = await asyncio.wait_for(self._commands.get(), remaining)
                except TimeoutError:
                    return
                kind = command.pop("do")
                if kind == "exit":
                    return
                started = process_cpu_seconds()
                try:
                    reply = await handlers[kind](**command)
                except Exception as error:  # reported to the parent, which fails
                    reply = {"error": f"{kind}: {type(error).__name__}: {error}"}
                reply["cpu_s"] = process_cpu_seconds() - started
                self._replies.send(reply)
        finally:
            loop.remove_reader(self._command_pipe.fileno())
            for connection in self._connections:
                connection.abort()

    def _mint_tokens(self) -> list[str | None]:
        plan = self._plan
        players = range(plan.first_player, plan.first_player + plan.connections)
        if plan.secret is None:
            return [None] * plan.connections
        from rtgateway.config import parse_config
        from rtgateway.tokens import mint_token

        auth = parse_config(
            {"auth": {"secret": plan.secret}},
            source="<bench>",
            base_dir=Path.cwd(),
            environ={},
        ).auth
        return [mint_token(auth, f"p{i}") for i in players]

    # -- for the workloads -------------------------------------------------

    @property
    def plan(self) -> Plan:
        return self._plan

    @property
    def connections(self) -> list[ClientConnection]:
        """The connections opened by ``open``, in plan order."""
        return self._connections

    @property
    def tokens(self) -> list[str | None]:
        """The token of each planned connection, in plan order."""
        return self._tokens

    async def connect(
        self, url: str, token: str | None, timeout: float
    ) -> tuple[ClientConnection | None, str | None]:
        """Open one more connection; (connection, None) or (None, error)."""
        loop = asyncio.get_running_loop()
        encoding = ENCODINGS[self._plan.encoding]
        host, port = url.split("/")[2].split(":")
        deadline = time.monotonic() + timeout
        opened: asyncio.Future[str | None] = loop.create_future()
        connection = ClientConnection(url, encoding, token, opened)
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: connection, host, int(port)),
                deadline - time.monotonic(),
            )
            error = await asyncio.wait_for(opened, deadline - time.monotonic())
        except (OSError, TimeoutError) as failure:
            error = type(failure).__name__
        if error is not None:
            connection.abort()
            return None, error
        return connection, None

    def _read_commands(self) -> None:
        try:
            while self._command_pipe.poll():
                self._commands.put_nowait(self._command_pipe.recv())
        except (EOFError, OSError):
            self._commands.put_nowait({"do": "exit"})

    async def _open(self, timeout: float) -> dict[str, Any]:
        """Open every connection, at most OPEN_CONCURRENCY handshakes at once.

        The connections keep the plan's order (connection ``i`` is player
        ``first_player + i``); those that failed are left out.
        """
        urls = self._plan.urls
        deadline = time.monotonic() + timeout
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        errors: Counter[str] = Counter()
        finished = started = time.monotonic()
        opened: list[ClientConnection | None] = [None] * len(self._tokens)

        async def open_one(index: int, token: str | None) -> None:
            nonlocal finished
            async with gate:
                connection, error = await self.connect(
                    urls[index % len(urls)], token, deadline - time.monotonic()
                )
                if error is not None:
                    errors[error] += 1
                    return
                opened[index] = connection
                finished = time.monotonic()

        await asyncio.gather(
            *(open_one(index, token) for index, token in enumerate(self._tokens))
        )
        self._connections.extend(c for c in opened if c is not None)
        return {
            "opened": len(self._connections),
            "failed": sum(errors.values()),
            "errors": dict(errors),
            "started": started,
            "finished": finished,
        }

    async def _ping(
        self,
        window: int,
        duration: float,
        max_messages: int,
        method: str = "sys.ping",
    ) -> dict[str, Any]:
        """Keep ``window`` calls of ``method`` in flight per connection for
        ``duration`` s."""
        started = time.monotonic()
        pinging = Pinging(started + duration, max_messages, method)
        for connection in self._connections:
            connection.start_pinging(pinging, window)
        await asyncio.sleep(duration)
        drain_until = time.monotonic() + DRAIN_S
        while (
            any(c.outstanding for c in self._connections)
            and time.monotonic() < drain_until
        ):
            await asyncio.sleep(0.01)
        ended = pinging.stop_at
        if pinging.sent >= max_messages and pinging.received:
            ended = min(ended, pinging.last_response)
        lost = sum(c.outstanding for c in self._connections)
        return {
            "received": pinging.received,
            "answered": pinging.answered,
            "errors": pinging.errors + lost,
            "elapsed": ended - started,
            "latencies": pinging.latencies,
        }

    async def _idle(self, seconds: float) -> dict[str, Any]:
        """Hold the connections open for ``seconds``, answering heartbeats."""
        before = sum(c.pings for c in self._connections)
        await asyncio.sleep(seconds)
        return {"pings": sum(c.pings for c in self._connections) - before}


# -- the parent's handle ------------------------------------------------------------


class LoadGenerators:
    """A group of load processes driven together; a context manager.

    :meth:`command` sends one command to every process and returns their
    replies, failing with :class:`LoadError` if any process reports an
    error, dies, or does not answer within the timeout.
    """

    def __init__(self, plan_list: list[Plan], start_timeout: float = 60.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._commands: list[Connection] = []
        self._replies: list[Connection] = []
        self._processes = []
        for plan in plan_list:
            command_in, command_out = context.Pipe(duplex=False)
            reply_in, reply_out = context.Pipe(duplex=False)
            process = context.Process(
                target=worker_main, args=(plan, command_in, reply_out), daemon=True
            )
            process.start()
            command_in.close()
            reply_out.close()
            self._commands.append(command_out)
            self._replies.append(reply_in)
            self._processes.append(process)
        try:
            self._collect(start_timeout)  # every process has minted its tokens
        except LoadError:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        """The process ids of the load processes, in plan order."""
        return [process.pid for process in self._processes]

    def command(
        self, do: str, reply_within: float, **arguments: Any
    ) -> list[dict[str, Any]]:
        """Send command ``do`` to every process; their replies, in process order."""
        for pipe in self._commands:
            pipe.send({"do": do, **arguments})
        return self._collect(reply_within)

    def command_one(
        self, index: int, do: str, reply_within: float, **arguments: Any
    ) -> dict[str, Any]:
        """Send command ``do`` to load process ``index`` only; its reply."""
        self._commands[index].send({"do": do, **arguments})
        return self._collect(reply_within, [index])[0]

    def _collect(
        self, timeout: float, indices: list[int] | None = None
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        replies = []
        for index in range(len(self._replies)) if indices is None else indices:
            pipe = self._replies[index]
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise LoadError(f"load process {index} did not answer in {timeout} s")
            try:
                reply = pipe.recv()
            except (EOFError, OSError):
                raise LoadError(f"load process {index} died") from None
            if "error" in reply:
                raise LoadError(f"load process {index}: {reply['error']}")
            replies.append(reply)
        return replies

    def close(self, timeout: float = 10.0) -> None:
        """Tell every process to exit; kill those still running after ``timeout``."""
        for pipe in self._commands:
            with contextlib.suppress(OSError):
                pipe.send({"do": "exit"})
        deadline = time.monotonic() + timeout
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        for pipe in (*self._commands, *self._replies):
            pipe.close()

    def __enter__(self) -> LoadGenerators:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
