"""Network condition simulation: a TCP proxy that makes a link bad on purpose.

Put :class:`NetSim` between a client and a server (a game client and the
gateway, a gateway and Redis) and the link between them gets as bad as a
test asks, while both ends run their real code over real TCP::

    proxy = NetSim("127.0.0.1", redis_port, reactor=reactor, seed=7).start()
    # connect to 127.0.0.1:proxy.port instead of the server
    proxy.set_conditions("down", latency_s=0.2, jitter_s=0.05)
    proxy.set_conditions("both", bandwidth_bps=10_000)
    proxy.slow()                  # a congested link in one call
    proxy.drop_all()              # reset every connection now, both sides
    proxy.random_drops(0.5)       # each connection reset at random, 0.5/s
    proxy.blackhole(10.0)         # accept, forward nothing, for 10 s
    proxy.clear()                 # a clean link again
    proxy.stop()

Directions: ``"up"`` is what the connecting side sends towards the target,
``"down"`` what comes back, ``"both"`` sets the two alike.

What each condition means:

- Latency and jitter: bytes are forwarded ``latency_s`` plus a uniform
  ``[-jitter_s, +jitter_s]`` after they arrive, never before bytes that
  arrived earlier (TCP does not reorder). A change applies to bytes that
  arrive after it.
- Bandwidth: at most ``bandwidth_bps`` bytes per second each way, sent in
  10 ms slices; a full queue (64 KiB) stops reading from the sender, so the
  limit reaches it as TCP backpressure.
- Drops are resets: both connections are aborted (Twisted closes an
  aborted socket with ``SO_LINGER`` 0), so each end sees ECONNRESET, not
  an orderly close.
- Blackhole: connections are still accepted, nothing is forwarded either
  way and what arrives (or was queued) is discarded, as by a network that
  drops every packet; new connections never reach the target. When it
  ends (after ``duration_s`` or at :meth:`NetSim.clear_blackhole`) every
  connection that lost bytes or never reached the target is reset, since
  its byte stream has a hole; the others carry on.
- Slow: high latency with jitter and a trickle of bandwidth both ways.

Time runs on ``clock`` (any ``IReactorTime``, by default the reactor) and
randomness on ``random.Random(seed)``, so unit tests drive the proxy with
``task.Clock`` and a ``MemoryReactorClock``, and a seeded run repeats.

From another process: ``python -m rtgateway.testing.netsim --target
HOST:PORT`` prints ``{"port": P, "control": C}`` on one line, proxies on
``127.0.0.1:P`` and takes the same calls as JSON over HTTP on ``C``
(:class:`ControlResource`). :class:`NetSimProcess` starts it that way and
has the same methods as :class:`NetSim` (synchronous, over HTTP), for tests
whose own thread blocks, as the tests of twistd gateways with synchronous
WebSocket clients do.
"""

from __future__ import annotations

import argparse
import json
import random
import select
import subprocess
import sys
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import Site

DIRECTIONS = ("up", "down")
#: Seconds of bandwidth in one slice: the pace's granularity.
SLICE_S = 0.01
#: Bytes queued in one direction before the sender is no longer read.
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024


@dataclass
class Conditions:
    """How one direction of the link behaves."""

    latency_s: float = 0.0
    jitter_s: float = 0.0
    bandwidth_bps: float | None = None


class _Pipe:
    """One direction of one connection: delays, paces and forwards in order.

    It is the producer of its sink transport (a full sink pauses it) and
    pauses its source while too much waits in its queue.
    """

    def __init__(self, link: _Link, direction: str) -> None:
        self._link = link
        self._proxy = link.proxy
        self._direction = direction
        self.source: Any = None
        self.sink: Any = None
        self._queue: deque[tuple[float, bytes]] = deque()
        self._queued = 0
        self._last_due = 0.0
        self._link_free = 0.0
        self._call: IDelayedCall | None = None
        self._paused = False
        self._source_paused = False
        self._finishing = False
        self._stopped = False

    def attach_sink(self, transport: Any) -> None:
        self.sink = transport
        transport.registerProducer(self, True)
        self._schedule()

    def feed(self, data: bytes) -> None:
        if self._stopped:
            return
        if self._proxy.blackholed:
            self._link.damaged = True
            return
        conditions = self._proxy.conditions[self._direction]
        now = self._proxy.clock.seconds()
        delay = conditions.latency_s
        if conditions.jitter_s:
            delay += self._proxy.rng.uniform(-conditions.jitter_s, conditions.jitter_s)
        due = max(now + max(delay, 0.0), self._last_due)
        self._last_due = due
        size = len(data)
        if conditions.bandwidth_bps:
            size = max(1, int(conditions.bandwidth_bps * SLICE_S))
        for start in range(0, len(data), size):
            self._queue.append((due, data[start : start + size]))
        self._queued += len(data)
        if self._queued > HIGH_WATER and not self._source_paused:
            self._source_paused = True
            self.source.pauseProducing()
        self._schedule()

    def finish(self) -> None:
        """The source closed: close the sink once what is queued has gone."""
        self._finishing = True
        self._schedule()

    def discard(self) -> None:
        """Lose what is queued (a blackhole); the link is damaged if it held bytes."""
        if self._queue:
            self._link.damaged = True
        self._queue.clear()
        self._queued = 0
        self._cancel()
        self._resume_source()

    def stop(self) -> None:
        """The sink is gone: forward nothing more."""
        self._stopped = True
        self._queue.clear()
        self._cancel()

    def _cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        if self._call is not None or self._paused or self._stopped:
            return
        if self.sink is None:
            return
        if not self._queue:
            if self._finishing:
                self.sink.loseConnection()
            return
        now = self._proxy.clock.seconds()
        due, piece = self._queue[0]
        arrival = max(due, self._link_free)
        bandwidth = self._proxy.conditions[self._direction].bandwidth_bps
        if bandwidth:
            arrival += len(piece) / bandwidth
        self._call = self._proxy.clock.callLater(
            max(0.0, arrival - now), self._send, arrival
        )

    def _send(self, arrival: float) -> None:
        self._call = None
        _, piece = self._queue.popleft()
        self._queued -= len(piece)
        self._link_free = arrival
        self._proxy.forwarded[self._direction] += len(piece)
        self.sink.write(piece)
        if self._queued < LOW_WATER:
            self._resume_source()
        self._schedule()

    def _resume_source(self) -> None:
        if self._source_paused:
            self._source_paused = False
            self.source.resumeProducing()

    # IPushProducer, for the sink transport

    def pauseProducing(self) -> None:
        self._paused = True
        self._cancel()

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self._cancel()


class _Link:
    """One proxied connection: the accepted side, the target side, two pipes."""

    def __init__(self, proxy: NetSim, downstream: Any) -> None:
        self.proxy = proxy
        self.downstream = downstream
        self.upstream: Any = None
        self.up = _Pipe(self, "up")
        self.down = _Pipe(self, "down")
        self.up.source = downstream
        self.down.attach_sink(downstream)
        #: Bytes of this connection were discarded by a blackhole.
        self.damaged = False
        #: Accepted during a blackhole: never connected to the target.
        self.stranded = proxy.blackholed
        self.drop_call: IDelayedCall | None = None
        self.closed = False
        self._lost: set[str] = set()

    def attach_upstream(self, transport: Any) -> None:
        self.upstream = transport
        self.down.source = transport
        self.up.attach_sink(transport)

    def lost(self, side: str) -> None:
        """One side closed: the other gets what is queued for it, then closes."""
        if self.closed:
            return
        self._lost.add(side)
        if side == "downstream":
            self.down.stop()
            self.up.finish()
        else:
            self.up.stop()
            self.down.finish()
        if len(self._lost) == 2 or (self.stranded and side == "downstream"):
            self.close()

    def reset(self) -> None:
        """Abort both sides with a TCP reset."""
        if self.closed:
            return
        self.up.stop()
        self.down.stop()
        for transport in (self.downstream, self.upstream):
            if transport is not None:
                transport.abortConnection()  # SO_LINGER 0: an RST
        self.proxy.dropped += 1
        self.close()

    def unreachable(self) -> None:
        """The target refused or did not answer: close the accepted side."""
        if not self.closed:
            self.downstream.abortConnection()
            self.close()

    def close(self) -> None:
        self.closed = True
        self.up.stop()
        self.down.stop()
        if self.drop_call is not None and self.drop_call.active():
            self.drop_call.cancel()
        self.proxy.links.discard(self)


class _Downstream(Protocol):
    """The connection the proxy accepted."""

    def __init__(self, proxy: NetSim) -> None:
        self._proxy = proxy
        self.link: _Link | None = None

    def connectionMade(self) -> None:
        self.link = self._proxy._accepted(self.transport)

    def dataReceived(self, data: bytes) -> None:
        assert self.link is not None  # made by connectionMade
        self.link.up.feed(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.link is not None:
            self.link.lost("downstream")


class _Upstream(Protocol):
    """The proxy's connection to the target, for one accepted connection."""

    transport: ITCPTransport

    def __init__(self, link: _Link) -> None:
        self.link = link

    def connectionMade(self) -> None:
        if self.link.closed:  # reset while connecting
            self.transport.abortConnection()
            return
        self.link.attach_upstream(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.link.down.feed(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.link.lost("upstream")


class _UpstreamFactory(ClientFactory):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def buildProtocol(self, addr: Any) -> _Upstream:
        return _Upstream(self.link)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.link.unreachable()


class NetSim:
    """A TCP proxy from ``listen_host:listen_port`` to ``target_host:target_port``.

    ``reactor`` listens and connects (``IReactorTCP``); ``clock`` times
    every delay (``IReactorTime``, by default ``reactor``); ``seed`` makes
    jitter and random drops repeat. Port 0 listens on a free port, read
    from :attr:`port` after :meth:`start`.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        reactor: Any,
        clock: IReactorTime | None = None,
        seed: int | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target = (target_host, target_port)
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.rng = random.Random(seed)
        self.conditions = {d: Conditions() for d in DIRECTIONS}
        self.links: set[_Link] = set()
        self.blackholed = False
        self.drop_rate = 0.0
        #: Counters: connections accepted, connections reset, bytes forwarded.
        self.accepted = 0
        self.dropped = 0
        self.forwarded = dict.fromkeys(DIRECTIONS, 0)
        self._listen = (listen_host, listen_port)
        self._listening: Any = None
        self._blackhole_call: IDelayedCall | None = None

    def start(self) -> NetSim:
        """Listen (at once); returns the proxy."""
        factory = Factory.forProtocol(lambda: _Downstream(self))
        host, port = self._listen
        self._listening = self.reactor.listenTCP(port, factory, interface=host)
        return self

    @property
    def port(self) -> int:
        return self._listening.getHost().port

    def stop(self) -> Any:
        """Reset every connection and stop listening (a Deferred or None)."""
        self.drop_all()
        if self._blackhole_call is not None and self._blackhole_call.active():
            self._blackhole_call.cancel()
        return self._listening.stopListening()

    # -- conditions

    def set_conditions(
        self,
        direction: str = "both",
        *,
        latency_s: float = 0.0,
        jitter_s: float = 0.0,
        bandwidth_bps: float | None = None,
    ) -> None:
        """Replace the conditions of one direction, or of both."""
        if latency_s < 0 or jitter_s < 0 or (bandwidth_bps or 0) < 0:
            raise ValueError("latency, jitter and bandwidth cannot be negative")
        for name in _directions(direction):
            self.conditions[name] = Conditions(latency_s, jitter_s, bandwidth_bps)

    def slow(
        self,
        latency_s: float = 0.3,
        jitter_s: float = 0.1,
        bandwidth_bps: float = 2_000.0,
    ) -> None:
        """A congested link both ways: late, uneven and narrow."""
        self.set_conditions(
            "both", latency_s=latency_s, jitter_s=jitter_s, bandwidth_bps=bandwidth_bps
        )

    def drop_all(self) -> int:
        """Reset every connection now; returns how many there were."""
        links = list(self.links)
        for link in links:
            link.reset()
        return len(links)

    def random_drops(self, rate_per_s: float) -> None:
        """Reset each connection at random, ``rate_per_s`` times a second (0: off)."""
        if rate_per_s < 0:
            raise ValueError("the drop rate cannot be negative")
        self.drop_rate = rate_per_s
        for link in self.links:
            self._schedule_drop(link)

    def blackhole(self, duration_s: float | None = None) -> None:
        """Forward nothing, for ``duration_s`` or until :meth:`clear_blackhole`."""
        if self._blackhole_call is not None and self._blackhole_call.active():
            self._blackhole_call.cancel()
        self._blackhole_call = None
        self.blackholed = True
        for link in self.links:
            link.up.discard()
            link.down.discard()
        if duration_s is not None:
            self._blackhole_call = self.clock.callLater(
                duration_s, self.clear_blackhole
            )

    def clear_blackhole(self) -> None:
        """End a blackhole; reset the connections that lost bytes in it."""
        if self._blackhole_call is not None and self._blackhole_call.active():
            self._blackhole_call.cancel()
        self._blackhole_call = None
        if not self.blackholed:
            return
        self.blackholed = False
        for link in list(self.links):
            if link.damaged or link.stranded:
                link.reset()

    def clear(self) -> None:
        """A clean link again: no delay, no limit, no drops, no blackhole."""
        self.set_conditions("both")
        self.random_drops(0.0)
        self.clear_blackhole()

    def status(self) -> dict[str, Any]:
        """What the proxy does now, and its counters (JSON-ready)."""
        return {
            "port": self.port,
            "target": list(self.target),
            "connections": len(self.links),
            "accepted": self.accepted,
            "dropped": self.dropped,
            "forwarded": dict(self.forwarded),
            "conditions": {d: asdict(c) for d, c in self.conditions.items()},
            "blackholed": self.blackholed,
            "drop_rate": self.drop_rate,
        }

    # -- connections

    def _accepted(self, transport: Any) -> _Link:
        link = _Link(self, transport)
        self.links.add(link)
        self.accepted += 1
        if not link.stranded:
            host, port = self.target
            self.reactor.connectTCP(host, port, _UpstreamFactory(link))
        self._schedule_drop(link)
        return link

    def _schedule_drop(self, link: _Link) -> None:
        if link.drop_call is not None and link.drop_call.active():
            link.drop_call.cancel()
        link.drop_call = None
        if self.drop_rate > 0:
            delay = self.rng.expovariate(self.drop_rate)
            link.drop_call = self.clock.callLater(delay, link.reset)


def _directions(direction: str) -> tuple[str, ...]:
    if direction == "both":
        return DIRECTIONS
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be up, down or both, not {direction!r}")
    return (direction,)


# -- control from another process -------------------------------------------

#: The calls the HTTP control takes: ``POST /<name>`` with keyword arguments
#: as a JSON object; ``GET /status`` reads :meth:`NetSim.status`.
CONTROL_CALLS = (
    "set_conditions",
    "slow",
    "drop_all",
    "random_drops",
    "blackhole",
    "clear_blackhole",
    "clear",
)


class ControlResource(Resource):
    """JSON over HTTP for one :class:`NetSim`; answers ``{"result": ...}``."""

    isLeaf = True

    def __init__(self, proxy: NetSim) -> None:
        super().__init__()
        self._proxy = proxy

    def render_GET(self, request: Any) -> bytes:
        if request.path != b"/status":
            return self._answer(request, 404, {"error": "GET /status only"})
        return self._answer(request, 200, {"result": self._proxy.status()})

    def render_POST(self, request: Any) -> bytes:
        name = request.path.decode().strip("/")
        if name not in CONTROL_CALLS:
            return self._answer(request, 404, {"error": f"no call {name!r}"})
        try:
            arguments = json.loads(request.content.read() or b"{}")
            result = getattr(self._proxy, name)(**arguments)
        except (TypeError, ValueError) as error:
            return self._answer(request, 400, {"error": str(error)})
        return self._answer(request, 200, {"result": result})

    @staticmethod
    def _answer(request: Any, code: int, body: dict[str, Any]) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode()


class NetSimControl:
    """The calls of :class:`NetSim`, made over HTTP to a proxy elsewhere."""

    def __init__(self, control_url: str, timeout: float = 5.0) -> None:
        self.control_url = control_url
        self._timeout = timeout

    def _post(self, name: str, **arguments: Any) -> Any:
        request = urllib.request.Request(
            f"{self.control_url}/{name}",
            data=json.dumps(arguments).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            return json.loads(response.read())["result"]

    def set_conditions(self, direction: str = "both", **conditions: Any) -> None:
        self._post("set_conditions", direction=direction, **conditions)

    def slow(self, **conditions: Any) -> None:
        self._post("slow", **conditions)

    def drop_all(self) -> int:
        return self._post("drop_all")

    def random_drops(self, rate_per_s: float) -> None:
        self._post("random_drops", rate_per_s=rate_per_s)

    def blackhole(self, duration_s: float | None = None) -> None:
        self._post("blackhole", duration_s=duration_s)

    def clear_blackhole(self) -> None:
        self._post("clear_blackhole")

    def clear(self) -> None:
        self._post("clear")

    def status(self) -> dict[str, Any]:
        url = f"{self.control_url}/status"
        with urllib.request.urlopen(url, timeout=self._timeout) as response:
            return json.loads(response.read())["result"]


class NetSimProcess(NetSimControl):
    """``python -m rtgateway.testing.netsim`` as a child process, controlled here."""

    def __init__(self, target_host: str, target_port: int, seed: int = 0) -> None:
        super().__init__("")
        self._arguments = ["--target", f"{target_host}:{target_port}"]
        self._arguments += ["--seed", str(seed)]
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> NetSimProcess:
        """Start the proxy; returns once it listens, with :attr:`port` set."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rtgateway.testing.netsim", *self._arguments],
            stdout=subprocess.PIPE,
        )
        stdout = self.process.stdout
        assert stdout is not None  # a pipe, asked for above
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError("the netsim proxy did not start")
        ports = json.loads(line)
        self.port = ports["port"]
        self.control_url = f"http://127.0.0.1:{ports['control']}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL what does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def __enter__(self) -> NetSimProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> None:
    """Run a proxy and its HTTP control until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m rtgateway.testing.netsim", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--target", required=True, type=_address, help="HOST:PORT")
    parser.add_argument("--listen", default="127.0.0.1:0", type=_address)
    parser.add_argument("--control", default="127.0.0.1:0", type=_address)
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args(argv)
    from twisted.internet import reactor

    host, port = options.listen
    proxy = NetSim(
        *options.target,
        reactor=reactor,
        seed=options.seed,
        listen_host=host,
        listen_port=port,
    ).start()
    host, port = options.control
    # Twisted types listenTCP's factory as a ServerFactory of its default
    # protocol type; a Site is one of its own channel type (the same at run
    # time).
    site = Site(ControlResource(proxy))
    control = reactor.listenTCP(port, site, interface=host)  # type: ignore[arg-type]
    address = control.getHost()
    assert isinstance(address, IPv4Address)
    print(json.dumps({"port": proxy.port, "control": address.port}))
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__":
    main()
