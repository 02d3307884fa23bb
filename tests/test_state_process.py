"""State synchronization against real gateway processes (twistd plugin).

Third-party ``websockets`` clients build their mirrors from pushes only and
check every ``state.check``; two gateways share a real redis-server; a
client that never reads (a bare socket with a small receive buffer) sits in
a 60 Hz zone while its neighbour's tick-to-client latency is measured.
"""

from __future__ import annotations

import itertools
import json
import socket
import statistics
import threading
import time

import pytest
from websockets.sync.client import connect

from rtgateway.state.mirror import Mirror
from rtgateway.testing import GatewayProcess, make_config, token_for
from rtgateway.testing.redis import RedisServer

pytestmark = pytest.mark.integration

TOKENS = make_config()
ZONES = {
    "arena": {
        "check_interval_ticks": 10,
        "timestamps": True,
        "position": ["x", "y"],
        "max_speed": 20,
        "fields": {
            "x": {"type": "number", "quantum": 0.01},
            "y": {"type": "number", "quantum": 0.01},
            "hp": {"type": "integer", "lane": "slow", "default": 100},
        },
    },
    # A zone where each input carries 1 KB, so that a client that does not
    # read fills its buffers within a second, and is closed soon after.
    "busy": {
        "timestamps": True,
        "lag_close_s": 1.5,
        "fields": {
            "x": {"type": "number", "quantum": 0.01},
            "pad": {"type": "string", "max_length": 2000},
        },
    },
}
SETTINGS = {"zones": ZONES, "limits": {"rate_per_second": 1000, "rate_burst": 1000}}


class StateClient:
    """A websockets client whose reader thread applies every state push."""

    def __init__(self, url: str, sub: str) -> None:
        self.sub = sub
        self.mirror = Mirror(own=f"player.{sub}")
        self.checks = 0
        self.mismatches = 0
        self.latencies: list[float] = []
        self.responses: dict[int, dict] = {}
        self.seen: list[dict] = []
        self._ids = 0
        self._lock = threading.Condition()
        self.ws = self._open(url)
        self.welcome = json.loads(self.ws.recv(timeout=10))["params"]
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _open(self, url: str):
        token = token_for(TOKENS, self.sub)
        connection = connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
        )
        return connection.__enter__()  # closed by close()

    def _read(self) -> None:
        try:
            for frame in self.ws:
                message = json.loads(frame)
                with self._lock:
                    if "id" in message:
                        self.responses[message["id"]] = message
                    else:
                        self._push(message)
                    self._lock.notify_all()
        except Exception:  # the connection closed
            return

    def _push(self, message: dict) -> None:
        method, params = message["method"], message["params"]
        if not method.startswith("state."):
            return
        self.seen.append(message)
        if "ts" in params:
            self.latencies.append(time.time() * 1000 - params["ts"])
        ok = self.mirror.apply(method, params)
        if method == "state.check":
            self.checks += 1
            self.mismatches += not ok

    def call(self, method: str, params: dict, timeout: float = 10.0) -> dict:
        with self._lock:
            self._ids += 1
            request_id = self._ids
        self.ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}
            )
        )
        deadline = time.monotonic() + timeout
        with self._lock:
            while request_id not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer to {method}")
                self._lock.wait(left)
            return self.responses.pop(request_id)

    def move(self, seq: int, **fields) -> None:
        note = {
            "jsonrpc": "2.0",
            "method": "state.update",
            "params": {"fields": fields, "input_seq": seq},
        }
        self.ws.send(json.dumps(note))

    def wait_for(self, check, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("condition not reached")
                self._lock.wait(min(left, 0.1))

    def close(self) -> None:
        self.ws.close()


def walk(clients, seconds: float, hz: int = 60) -> None:
    """Every client moves along x at 1.2 m/s, one input per 1/hz s."""
    steps = int(seconds * hz)
    started = time.monotonic()
    for step in range(1, steps + 1):
        for index, client in enumerate(clients):
            client.move(step, x=round(index * 3 + step * 1.2 / hz, 2), y=float(index))
        pause = started + step / hz - time.monotonic()
        if pause > 0:
            time.sleep(pause)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """One real gateway process with a 60 Hz zone."""
    process = GatewayProcess(tmp_path_factory.mktemp("state"), SETTINGS).start()
    yield process
    process.stop()


def test_mirrors_built_from_pushes_match_every_check(gateway):
    """Two websockets clients move at 60 Hz; every check matches their mirrors."""
    alice, bob = StateClient(gateway.url, "alice"), StateClient(gateway.url, "bob")
    try:
        for index, client in enumerate((alice, bob)):
            reply = client.call(
                "state.join",
                {"zone": "arena", "fields": {"x": index * 3.0, "y": float(index)}},
            )
            assert reply["result"]["tick_hz"] == {"fast": 60, "slow": 10}
        walk([alice, bob], 2.0)
        alice.wait_for(
            lambda: alice.mirror.entities.get("player.bob", (0, {}))[1].get("x") == 5.4
        )
        for client in (alice, bob):
            assert client.checks >= 5
            assert client.mismatches == 0
            answer = client.call("state.hash", {})["result"]
            assert answer["hash"] == client.mirror.hash()
        assert statistics.median(alice.latencies) < 50
    finally:
        alice.close()
        bob.close()


def test_a_client_that_never_reads_does_not_slow_its_neighbours(gateway):
    """A bare socket that joins and never reads is closed 4008; its neighbour's
    tick-to-client latency holds meanwhile."""
    mover, watcher = (
        StateClient(gateway.url, "mover"),
        StateClient(gateway.url, "watcher"),
    )
    sink = socket.socket()
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # A small segment size too: loopback's 64 KB segments would let the
    # kernel size the gateway's send buffer for megabytes.
    sink.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1024)
    sink.connect(("127.0.0.1", gateway.port))
    try:
        _handshake(sink, gateway.port, token_for(TOKENS, "sink"))
        join = {"zone": "busy", "fields": {"x": 1.0}}
        _send_text(
            sink,
            json.dumps(
                {"jsonrpc": "2.0", "method": "state.join", "params": join, "id": 1}
            ),
        )
        for client in (mover, watcher):
            client.call("state.join", {"zone": "busy", "fields": {"x": 0.0}})
        started = time.monotonic()
        for step in range(1, 6 * 60):
            mover.move(step, x=step * 0.01, pad=str(step % 10) * 1000)
            pause = started + step / 60 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        watcher.wait_for(
            lambda: watcher.mirror.entities["player.mover"][1]["x"] == 3.59
        )
        late = sorted(watcher.latencies)
        assert statistics.median(late) < 50
        assert late[int(len(late) * 0.99)] < 200
        deadline = time.monotonic() + 10
        while (
            gateway.metric("rtgateway_connections_closed_total", {"code": "4008"}) < 1
        ):
            assert time.monotonic() < deadline, "the sink was not closed 4008"
            time.sleep(0.1)
        assert gateway.metric("rtgateway_state_slow_clients_total") >= 1
    finally:
        sink.close()
        mover.close()
        watcher.close()


FLOODERS = 30
FLOOD_INPUTS = 4000


def test_ticks_keep_their_rate_while_clients_send_more_than_it_can_take(tmp_path):
    """Thirty sockets each write 4,000 inputs at once, far more than a turn of
    the reactor can process: the zone's deltas keep reaching a watcher every
    few ticks, not once per turn of a second or more."""
    unlimited = {"rate_per_second": 10**9, "rate_burst": 10**9}
    settings = {**SETTINGS, "limits": {**unlimited, "abuse_rejections": 10**9}}
    process = GatewayProcess(tmp_path, settings).start()
    watcher = StateClient(process.url, "watcher")
    flooders = []
    try:
        watcher.call("state.join", {"zone": "arena", "fields": {"x": 0.0, "y": 0.0}})
        for index in range(FLOODERS):
            sock = socket.create_connection(("127.0.0.1", process.port))
            _handshake(sock, process.port, token_for(TOKENS, f"flood{index}"))
            join = {"zone": "arena", "fields": {"x": 1.0, "y": float(index)}}
            _send_text(sock, json.dumps(_request("state.join", join)))
            flooders.append(sock)
        watcher.wait_for(lambda: len(watcher.mirror.entities) == FLOODERS + 1)
        blobs = [
            b"".join(
                _text_frame(json.dumps(_input(seq, x=1.0 + seq * 0.0001)))
                for seq in range(1, FLOOD_INPUTS + 1)
            )
            for _ in flooders
        ]
        seen = len(watcher.seen)
        senders = [
            threading.Thread(target=sock.sendall, args=(blob,), daemon=True)
            for sock, blob in zip(flooders, blobs, strict=True)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=60)
        watcher.wait_for(
            lambda: all(
                watcher.mirror.entities[f"player.flood{i}"][1]["x"] == 1.4
                for i in range(FLOODERS)
            ),
            timeout=60,
        )
        with watcher._lock:
            flood = [m for m in watcher.seen[seen:] if m["method"] == "state.delta"]
        ticks = [m["params"]["tick"] for m in flood]
        stamps = [m["params"]["ts"] for m in flood]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        # 120,000 inputs took seconds to process; meanwhile ticks went on.
        assert len(flood) > 30, len(flood)
        assert statistics.median(gaps) < 50, sorted(gaps)[-10:]
        assert max(gaps) < 500, sorted(gaps)[-10:]
        assert ticks == sorted(ticks)
    finally:
        for sock in flooders:
            sock.close()
        watcher.close()
        process.stop()


def _request(method: str, params: dict) -> dict:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}


def _input(seq: int, **fields) -> dict:
    return {
        "jsonrpc": "2.0",
        "method": "state.update",
        "params": {"fields": fields, "input_seq": seq},
    }


def _handshake(sock: socket.socket, port: int, token: str) -> None:
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head


def _send_text(sock: socket.socket, text: str) -> None:
    sock.sendall(_text_frame(text))


def _text_frame(text: str) -> bytes:
    """A masked client text frame (payloads under 64 KiB)."""
    payload = text.encode()
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    header = (
        bytes([0x81, 0x80 | length])
        if length < 126
        else bytes([0x81, 0xFE]) + length.to_bytes(2, "big")
    )
    return header + mask + masked


@pytest.fixture(scope="module", params=["redis", "nats"])
def cluster(request, tmp_path_factory, nats_server):
    """Two gateway processes on one real redis-server, on either bus."""
    directory = tmp_path_factory.mktemp("state-cluster")
    with RedisServer() as redis:
        backend = {"backend": {"kind": "redis", "redis_url": redis.url}}
        if request.param == "nats":
            backend["backend"].update(bus="nats", nats_url=[nats_server.url])
        gateways = [
            GatewayProcess(directory, {**SETTINGS, **backend}, name=name).start()
            for name in ("gw1", "gw2")
        ]
        yield gateways
        for process in gateways:
            process.stop()


def test_players_on_two_gateways_see_each_other_move(cluster):
    """Players on different gateways see each other move; both mirrors match checks."""
    gw1, gw2 = cluster
    alice, bob = StateClient(gw1.url, "alice2"), StateClient(gw2.url, "bob2")
    try:
        alice.call("state.join", {"zone": "arena", "fields": {"x": 0.0, "y": 0.0}})
        bob.call("state.join", {"zone": "arena", "fields": {"x": 3.0, "y": 1.0}})
        walk([alice, bob], 2.0)
        alice.wait_for(
            lambda: alice.mirror.entities.get("player.bob2", (0, {}))[1].get("x") == 5.4
        )
        bob.wait_for(
            lambda: bob.mirror.entities.get("player.alice2", (0, {}))[1].get("x") == 2.4
        )
        for client in (alice, bob):
            client.wait_for(lambda c=client: c.checks >= 5)
            assert client.mismatches == 0
    finally:
        alice.close()
        bob.close()


def test_resume_on_the_other_gateway_keeps_the_entity(cluster):
    """A player resuming on the other gateway keeps its entity and moves from there."""
    gw1, gw2 = cluster
    carol, dave = StateClient(gw1.url, "carol"), StateClient(gw1.url, "dave")
    try:
        carol.call("state.join", {"zone": "arena", "fields": {"x": 7.0, "y": 7.0}})
        dave.call("state.join", {"zone": "arena", "fields": {"x": 8.0, "y": 8.0}})
        dave.wait_for(lambda: "player.carol" in dave.mirror.entities)
        token = carol.welcome["resume_token"]
        carol.close()
        time.sleep(0.3)
        assert "player.carol" in dave.mirror.entities
        moved = StateClient(gw2.url, "carol")
        reply = moved.call("session.resume", {"resume_token": token})
        assert reply["result"]["resumed"] is True
        moved.wait_for(lambda: "player.carol" in moved.mirror.entities)
        assert moved.mirror.entities["player.carol"][1]["x"] == 7.0
        time.sleep(0.1)  # the speed limit allows 20 m/s: 0.1 m takes 5 ms
        moved.move(1, x=7.1)
        dave.wait_for(lambda: dave.mirror.entities["player.carol"][1].get("x") == 7.1)
        moved.close()
    finally:
        dave.close()
