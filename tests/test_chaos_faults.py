"""Chaos: real gateways and a real Redis through faults, one test per fault.

Two twistd gateways share one redis-server; gateway A reaches it through
the netsim proxy (run as a child process, since these tests block in
synchronous WebSocket clients), gateway B directly. On each gateway a
subscriber follows a reliable topic and a publisher publishes numbered
events at a steady pace, while the fault is applied: the proxy blackholes
A's Redis link for 10 s, resets it, or makes it slow; A is frozen with
SIGSTOP for 10 s; Redis is restarted empty.

What must hold, whatever the fault: every publication the gateway
acknowledged reaches every subscriber exactly once, in offset order within
an epoch; a subscriber whose connection ends sees a documented close code
and resumes (or gets -32003 and a fresh session); the gateways come back
by themselves: ``/readyz`` returns to 200 and a new client can publish and
receive. Each test prints its figures (recovery time, counts).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from rtgateway.testing import GatewayProcess, make_config, token_for
from rtgateway.testing.netsim import NetSimProcess
from rtgateway.testing.redis import RedisServer

pytestmark = pytest.mark.integration

TOKENS = make_config()
TOPIC = "chat.chaos"
SECTIONS = {
    "topics": {
        "chat": {
            "subscribe": "any",
            "publish": "any",
            "history_size": 10_000,
            "history_ttl_s": 600,
        }
    },
    "events": {"chat.line": {"schema": {"type": "object"}}},
    "limits": {"rate_per_second": 10_000, "rate_burst": 10_000},
}
CALL_TIMEOUT_S = 0.5  # the gateways' Redis call timeout
#: Close codes PROTOCOL.md lists.
DOCUMENTED_CLOSES = {1000, 1001, 1003, 1009, 4000, 4001, 4002, 4003, 4008, 4010}
PUBLISH_INTERVAL_S = 0.02


class Client:
    """A third-party WebSocket client speaking JSON-RPC; keeps topic events."""

    def __init__(self, url: str, sub: str) -> None:
        token = token_for(TOKENS, sub)
        self.ws = connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=2,
            close_timeout=2,
            # A game client's heartbeat: a frozen gateway is left within 3 s.
            ping_interval=1.0,
            ping_timeout=2.0,
            max_queue=None,  # read ahead freely: a slow reader would be closed 4008
        ).__enter__()  # closed by close()
        self.events: list[dict] = []
        self._ids = 0
        self.welcome = json.loads(self.ws.recv(timeout=5))["params"]

    def call(self, method: str, params: dict, timeout: float = 5.0) -> dict | None:
        """The response, or None when none came in time (outcome unknown)."""
        self._ids += 1
        self.ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "method": method, "params": params, "id": self._ids}
            )
        )
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                return None
            if message.get("id") == self._ids:
                return message
            self.keep(message)
        return None

    def keep(self, message: dict) -> None:
        if "id" not in message and "topic" in message.get("params", {}):
            self.events.append(message["params"])

    def pump(self, timeout: float) -> None:
        """Take the events that arrive within ``timeout``."""
        with contextlib.suppress(TimeoutError):
            self.keep(json.loads(self.ws.recv(timeout=timeout)))

    def close(self) -> None:
        self.ws.close()


def open_client(urls: list[str], sub: str, limit: float = 30.0) -> Client:
    """Connect to the first gateway that accepts (a gateway not ready says 503)."""
    deadline = time.monotonic() + limit
    while True:
        for url in urls:
            try:
                return Client(url, sub)
            except (InvalidStatus, OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.2)


@dataclass
class Outcome:
    """What one client lived through."""

    closes: list[int] = field(default_factory=list)  # codes the gateway sent
    lost: int = 0  # connections that ended without a close frame
    resumes: list[str] = field(default_factory=list)
    errors: list[object] = field(default_factory=list)

    def ended(self, closed: ConnectionClosed) -> None:
        if closed.rcvd is None:
            self.lost += 1
        else:
            self.closes.append(closed.rcvd.code)


class Subscriber(threading.Thread):
    """Follows the topic; when its connection ends it reconnects and resumes."""

    def __init__(self, urls: list[str], sub: str) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.sub = sub
        self.client = open_client(urls, sub)
        self.events: list[dict] = []
        self.outcome = Outcome()
        self.halt = threading.Event()
        response = self.client.call("pubsub.subscribe", {"topic": TOPIC})
        assert response is not None and "result" in response, response

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while not self.halt.is_set() and time.monotonic() < deadline:
            try:
                self.client.pump(0.1)
            except ConnectionClosed as closed:
                self.outcome.ended(closed)
                self._resume()
            self.events += self.client.events
            self.client.events.clear()

    def _resume(self) -> None:
        positions = {}
        if self.events:
            last = self.events[-1]
            positions[TOPIC] = {"offset": last["offset"], "epoch": last["epoch"]}
        token = self.client.welcome["resume_token"]
        self.client = open_client(self.urls, self.sub)
        response = self.client.call(
            "session.resume", {"resume_token": token, "positions": positions}
        )
        if response is not None and "result" in response:
            recovered = response["result"]["recovered"].get(TOPIC)
            self.outcome.resumes.append(f"resumed, recovered {recovered}")
            return
        error = (response or {}).get("error", {}).get("code")
        self.outcome.resumes.append(f"error {error}")
        if error != -32003:
            self.outcome.errors.append(response)
        since = positions.get(TOPIC)
        params = {"topic": TOPIC, **({"since": since} if since else {})}
        self.client.call("pubsub.subscribe", params)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)
        self.client.close()


class Publisher(threading.Thread):
    """Publishes numbered events; keeps the numbers the gateway acknowledged."""

    def __init__(self, urls: list[str], sub: str) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.sub = sub
        self.client = open_client(urls, sub)
        self.acked: set[str] = set()
        self.unavailable = 0
        self.unanswered = 0
        self.outcome = Outcome()
        self.halt = threading.Event()
        self._n = 0

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while not self.halt.is_set() and time.monotonic() < deadline:
            self._n += 1
            label = f"{self.sub}-{self._n}"
            params = {"topic": TOPIC, "type": "chat.line", "data": {"n": label}}
            try:
                response = self.client.call("pubsub.publish", params, timeout=2.0)
            except ConnectionClosed as closed:
                self.outcome.ended(closed)
                self.client = open_client(self.urls, self.sub)
                continue
            if response is None:
                self.unanswered += 1
            elif "result" in response:
                self.acked.add(label)
            elif response["error"]["code"] == -32005:
                self.unavailable += 1
            else:
                self.outcome.errors.append(response)
            time.sleep(PUBLISH_INTERVAL_S)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)
        self.client.close()


def eventually(check, limit: float, step: float = 0.05) -> bool:
    """Whether ``check()`` holds within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def wait_until(check, limit: float) -> None:
    assert eventually(check, limit), f"not within {limit} s"


def ready(gateway: GatewayProcess) -> bool:
    try:
        return gateway.get("/readyz", timeout=1.0)[0] == 200
    except OSError:
        return False


class Chaos:
    """Redis, the proxy, two gateways and the traffic over them."""

    def __init__(self, tmp_path) -> None:
        self.redis = RedisServer().start()
        self.proxy = NetSimProcess("127.0.0.1", self.redis.port, seed=12).start()
        through_proxy = f"redis://127.0.0.1:{self.proxy.port}/0"
        self.gw_a = self._gateway(tmp_path, "gw-a", through_proxy)
        self.gw_b = self._gateway(tmp_path, "gw-b", self.redis.url)
        a, b = self.gw_a.url, self.gw_b.url
        self.subscribers = [Subscriber([a, b], "sub-a"), Subscriber([b, a], "sub-b")]
        self.publishers = [Publisher([a, b], "pub-a"), Publisher([b, a], "pub-b")]

    @staticmethod
    def _gateway(tmp_path, name: str, redis_url: str) -> GatewayProcess:
        backend = {
            "kind": "redis",
            "redis_url": redis_url,
            "call_timeout_s": CALL_TIMEOUT_S,
        }
        return GatewayProcess(
            tmp_path, {**SECTIONS, "backend": backend}, name=name
        ).start()

    def start_traffic(self) -> None:
        for thread in (*self.subscribers, *self.publishers):
            thread.start()
        wait_until(lambda: all(len(s.events) >= 20 for s in self.subscribers), 10)

    def acked(self) -> set[str]:
        return set().union(*(set(p.acked) for p in self.publishers))

    def delivered(self, labels: set[str]) -> bool:
        return all(
            labels <= {e["data"]["n"] for e in list(s.events)} for s in self.subscribers
        )

    def recover(self, fault_ended: float) -> dict[str, float]:
        """Wait for the gateways and the subscribers; seconds after the fault.

        ``ready_s``: both gateways answer /readyz 200; ``caught_up_s``: both
        subscribers hold every publication acknowledged until then. Then
        publications flow one more second on the healed link, and the
        subscribers get the time they need (check() reports what is missing).
        """
        wait_until(lambda: ready(self.gw_a) and ready(self.gw_b), 30)
        figures = {"ready_s": time.monotonic() - fault_ended}
        so_far = self.acked()
        eventually(lambda: self.delivered(so_far), 20)
        figures["caught_up_s"] = time.monotonic() - fault_ended
        time.sleep(1.0)
        for publisher in self.publishers:
            publisher.stop()
        everything = self.acked()
        eventually(lambda: self.delivered(everything), 20)
        return figures

    def check(self, name: str, figures: dict[str, float]) -> dict:
        """Every acknowledged publication once, in order; report the figures."""
        for subscriber in self.subscribers:
            subscriber.stop()
        acked = self.acked()
        report: dict = {name: {k: round(v, 2) for k, v in figures.items()}}
        report["acked"] = len(acked)
        report["unavailable"] = sum(p.unavailable for p in self.publishers)
        report["unanswered"] = sum(p.unanswered for p in self.publishers)
        for subscriber in self.subscribers:
            labels = [e["data"]["n"] for e in subscriber.events]
            duplicated = len(labels) - len(set(labels))
            lost = len(acked - set(labels))
            report[subscriber.sub] = {
                "received": len(labels),
                "lost": lost,
                "duplicated": duplicated,
                "closes": subscriber.outcome.closes,
                "lost_connections": subscriber.outcome.lost,
                "resumes": subscriber.outcome.resumes,
            }
            assert lost == 0 and duplicated == 0, report
            assert_ordered(subscriber.events)
            assert set(subscriber.outcome.closes) <= DOCUMENTED_CLOSES, report
            assert not subscriber.outcome.errors, subscriber.outcome.errors
        for publisher in self.publishers:
            assert not publisher.outcome.errors, publisher.outcome.errors
            assert set(publisher.outcome.closes) <= DOCUMENTED_CLOSES, report
        for gateway in (self.gw_a, self.gw_b):
            assert_new_client_works(gateway)
        print(json.dumps(report))
        return report

    def close(self) -> None:
        for thread in (*self.subscribers, *self.publishers):
            if thread.is_alive():
                thread.stop()
        for gateway in (self.gw_a, self.gw_b):
            gateway.signal(signal.SIGCONT)
            gateway.stop()
        self.proxy.stop()
        self.redis.close()
        for gateway in (self.gw_a, self.gw_b):
            assert "Traceback" not in gateway.log(), gateway.log()


def assert_ordered(events: list[dict]) -> None:
    """Within an epoch, offsets only go up, one at a time."""
    for before, after in itertools.pairwise(events):
        if before["epoch"] == after["epoch"]:
            assert after["offset"] == before["offset"] + 1, (before, after)


def assert_new_client_works(gateway: GatewayProcess) -> None:
    """A client that arrives now subscribes, publishes and receives."""
    client = Client(gateway.url, "newcomer")
    topic = f"chat.new-{gateway.port}"
    assert "result" in client.call("pubsub.subscribe", {"topic": topic})
    params = {"topic": topic, "type": "chat.line", "data": {"n": "hello"}}
    assert "result" in client.call("pubsub.publish", params)
    deadline = time.monotonic() + 5
    while not client.events and time.monotonic() < deadline:
        client.pump(0.1)
    assert [e["data"] for e in client.events] == [{"n": "hello"}]
    client.close()


@pytest.fixture
def chaos(tmp_path):
    setup = Chaos(tmp_path)
    yield setup
    setup.close()


@pytest.mark.long
def test_redis_link_blackholed_for_10_s(chaos):
    """A's Redis link forwards nothing for 10 s; A stops being ready, then heals."""
    chaos.start_traffic()
    chaos.proxy.blackhole(10.0)
    started = time.monotonic()
    wait_until(lambda: not ready(chaos.gw_a), 10)
    time.sleep(max(0.0, 10.0 - (time.monotonic() - started)))
    chaos.check("blackhole_10s", chaos.recover(time.monotonic()))


def test_redis_link_reset(chaos):
    """Both of A's Redis connections are reset; A reconnects and repairs."""
    chaos.start_traffic()
    repairs = chaos.gw_a.metric("rtgateway_stream_repairs_total")
    assert chaos.proxy.drop_all() >= 2  # the command and the bus connections
    chaos.check("reset", chaos.recover(time.monotonic()))
    assert chaos.gw_a.metric("rtgateway_stream_repairs_total") > repairs


def test_redis_link_slow(chaos):
    """A's Redis link is late, uneven and narrow for 5 s; nothing is lost.

    Round trips of 0.1 to 0.7 s against a call timeout of 0.5 s: some calls
    time out while Redis did what they asked, and replies arrive late.
    """
    chaos.start_traffic()
    chaos.proxy.slow(latency_s=0.2, jitter_s=0.15, bandwidth_bps=20_000)
    time.sleep(5.0)
    chaos.proxy.clear()
    chaos.check("slow_5s", chaos.recover(time.monotonic()))


@pytest.mark.long
def test_gateway_frozen_for_10_s(chaos):
    """SIGSTOP A for 10 s then SIGCONT: its clients resume, nothing is lost."""
    chaos.start_traffic()
    chaos.gw_a.signal(signal.SIGSTOP)
    time.sleep(10.0)
    chaos.gw_a.signal(signal.SIGCONT)
    chaos.check("sigstop_10s", chaos.recover(time.monotonic()))
    # Its heartbeat took sub-a to gateway B, where its session resumed.
    assert chaos.subscribers[0].outcome.resumes == ["resumed, recovered True"]


def test_redis_restarted_empty(chaos):
    """Redis dies and comes back without its data: a new epoch, nothing lost after."""
    chaos.start_traffic()
    chaos.redis.kill()
    wait_until(lambda: not ready(chaos.gw_a) and not ready(chaos.gw_b), 10)
    chaos.redis.start()
    report = chaos.check("redis_restarted_empty", chaos.recover(time.monotonic()))
    for subscriber in chaos.subscribers:
        epochs = {e["epoch"] for e in subscriber.events}
        assert len(epochs) == 2, report
