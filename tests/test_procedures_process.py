"""Routed procedures across two twistd gateways on a real redis-server.

A backend service on gateway B registers a procedure; a player on gateway A
calls it through the bus and gets the answer. Then B is killed (SIGKILL)
with calls in flight: they fail with -32005 once B's registry entries run
out (its liveness TTL), and the procedure is gone from the cluster. Both
run on Redis pub/sub and on a real nats-server (``bus = "nats"``), where
services may also speak NATS themselves (:class:`NatsPeer`, a blocking
client on the project's sans-io NATS parser).
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from websockets.sync.client import connect

from rtgateway.backends.keys import call_channel
from rtgateway.nats import protocol as wire
from rtgateway.testing import GatewayProcess, make_config, token_for

pytestmark = pytest.mark.integration

TOKENS = make_config()
TTL_S = 2.0


class Peer:
    """A JSON connection of a player or, with the service role, a backend service."""

    def __init__(self, url: str, sub: str, roles: tuple[str, ...] = ()) -> None:
        token = token_for(TOKENS, sub, roles=roles)
        self.ws = connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
        ).__enter__()
        self.welcome = self.next()["params"]

    def next(self, timeout: float = 10.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def send(self, document: dict) -> None:
        self.ws.send(json.dumps(document))

    def request(self, method: str, params: dict | None, id: int) -> None:
        self.send(
            {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": id}
        )

    def answer(self, id: int, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if message.get("id") == id and "method" not in message:
                return message

    def close(self) -> None:
        self.ws.close()


class NatsPeer:
    """A backend service speaking NATS itself, with blocking reads."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("nats://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.parser = wire.Parser()
        self.queue: list = []
        self.next_message(wire.Info)
        options = {"verbose": False, "headers": True, "no_responders": True}
        self.sock.sendall(wire.connect(options) + wire.PING)
        self.next_message(wire.Pong)
        self.sids = 0

    def next_message(self, kind=wire.Msg, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            for n, message in enumerate(self.queue):
                if isinstance(message, kind):
                    return self.queue.pop(n)
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            for message in self.parser.feed(self.sock.recv(65536)):
                if isinstance(message, wire.Ping):
                    self.sock.sendall(wire.PONG)
                else:
                    self.queue.append(message)

    def subscribe(self, subject: str, queue: str | None = None) -> None:
        self.sids += 1
        self.sock.sendall(wire.sub(subject, self.sids, queue) + wire.PING)
        self.next_message(wire.Pong)

    def publish(self, subject: str, payload: bytes, reply: str | None = None):
        self.sock.sendall(wire.pub(subject, payload, reply))

    def close(self) -> None:
        self.sock.close()


def backend_sections(bus: str, redis_server, nats_server) -> dict:
    backend = {"kind": "redis", "redis_url": redis_server.url}
    if bus == "nats":
        backend.update(bus="nats", nats_url=[nats_server.url])
    return {
        "backend": backend,
        "presence": {"gateway_ttl_s": TTL_S, "reap_interval_s": 1},
        "procedures": {"call_timeout_s": 30},
        "topics": {"chat": {"subscribe": "any", "publish": "any"}},
        "events": {"chat.message": {"schema": {"type": "object"}}},
    }


def start_gateways(fleet, sections) -> list[GatewayProcess]:
    """Gateways A and B of the ``fleet``."""
    return [fleet.start(sections, name) for name in ("gw-a", "gw-b")]


@pytest.fixture(params=["redis", "nats"])
def gateways(request, fleet, redis_server, nats_server):
    """Gateways A and B on the shared redis-server, emptied first, on each bus."""
    redis_server.flush()
    return start_gateways(
        fleet, backend_sections(request.param, redis_server, nats_server)
    )


@pytest.fixture
def nats_gateways(fleet, redis_server, nats_server):
    """Gateways A and B with the NATS bus, and a service on NATS."""
    redis_server.flush()
    started = start_gateways(fleet, backend_sections("nats", redis_server, nats_server))
    peer = NatsPeer(nats_server.url)
    yield started, peer
    peer.close()


def test_player_on_a_calls_service_on_b(gateways):
    """The call crosses the bus with _caller; result and error come back as sent."""
    a, b = gateways
    service = Peer(b.url, "world-svc", roles=("service",))
    service.request("rpc.register", {"procedure": "world.set"}, 1)
    assert service.answer(1)["error"]["code"] == -32001
    service.request("rpc.register", {"procedure": "game.interact"}, 2)
    assert service.answer(2) == {"jsonrpc": "2.0", "result": {}, "id": 2}
    player = Peer(a.url, "alice")
    player.request("game.interact", {"door": 3}, 10)
    invocation = service.next()
    assert invocation["method"] == "game.interact"
    assert invocation["params"] == {
        "door": 3,
        "_caller": {"player_id": "alice", "session_id": player.welcome["session_id"]},
    }
    service.send({"jsonrpc": "2.0", "result": {"open": True}, "id": invocation["id"]})
    assert player.answer(10) == {"jsonrpc": "2.0", "result": {"open": True}, "id": 10}
    player.request("game.interact", {}, 11)
    invocation = service.next()
    error = {"code": 1001, "message": "locked", "data": {"key": "red"}}
    service.send({"jsonrpc": "2.0", "error": error, "id": invocation["id"]})
    assert player.answer(11)["error"] == error
    player.request("rpc.discover", {}, 12)
    names = [m["name"] for m in player.answer(12)["result"]["methods"]]
    assert "game.interact" in names
    service.close()
    player.close()


def test_sigkill_of_the_callee_gateway_fails_calls_in_flight(gateways):
    """B dies with calls in flight: -32005 within its TTL, then -32601."""
    a, b = gateways
    service = Peer(b.url, "world-svc", roles=("service",))
    service.request("rpc.register", {"procedure": "game.slow"}, 1)
    assert "result" in service.answer(1)
    player = Peer(a.url, "alice")
    for id in (10, 11, 12):
        player.request("game.slow", {}, id)
    for _ in range(3):
        assert service.next()["method"] == "game.slow"  # in flight on B
    killed = time.monotonic()
    b.kill()
    for id in (10, 11, 12):
        assert player.answer(id, timeout=TTL_S * 3)["error"]["code"] == -32005
    assert time.monotonic() - killed < TTL_S * 2
    player.request("game.slow", {}, 20)
    assert player.answer(20)["error"]["code"] == -32601
    player.close()


def test_service_on_nats_answers_players(nats_gateways):
    """rtgw.rpc.<procedure>: the request with _caller, results and errors as sent."""
    (a, _), service = nats_gateways
    service.subscribe("rtgw.rpc.shop.buy", queue="rtgw.rpc.shop.buy")
    player = Peer(a.url, "alice")
    player.request("shop.buy", {"item": "sword"}, 10)
    call = service.next_message()
    request = json.loads(call.payload)
    assert request["method"] == "shop.buy" and request["jsonrpc"] == "2.0"
    assert request["params"] == {
        "item": "sword",
        "_caller": {"player_id": "alice", "session_id": player.welcome["session_id"]},
    }
    answer = {"jsonrpc": "2.0", "result": {"paid": 3}, "id": request["id"]}
    service.publish(call.reply, json.dumps(answer).encode())
    assert player.answer(10) == {"jsonrpc": "2.0", "result": {"paid": 3}, "id": 10}
    player.request("shop.buy", {}, 11)
    call = service.next_message()
    error = {"code": 1002, "message": "no gold", "data": {"need": 3}}
    answer = {"jsonrpc": "2.0", "error": error, "id": json.loads(call.payload)["id"]}
    service.publish(call.reply, json.dumps(answer).encode())
    assert player.answer(11)["error"] == error
    player.request("shop.buy", {}, 12)
    service.publish(service.next_message().reply, b'{"jsonrpc": "2.0", "id": 1}')
    assert player.answer(12)["error"]["code"] == -32603  # malformed
    player.request("shop.buy", {}, 13)
    service.publish(service.next_message().reply, b"not json")
    assert player.answer(13)["error"]["code"] == -32603
    player.request("shop.nobody", {}, 14)
    assert player.answer(14)["error"]["code"] == -32601  # no responders
    player.close()


def test_websocket_callee_serves_calls_from_nats(nats_gateways):
    """A callee registered on B takes calls in its queue group, from NATS too.

    A plain NATS request gets the JSON-RPC response alone: only a gateway's
    calls are first told which gateway took them.
    """
    (_, b), peer = nats_gateways
    service = Peer(b.url, "world-svc", roles=("service",))
    service.request("rpc.register", {"procedure": "game.open"}, 1)
    assert "result" in service.answer(1)
    peer.subscribe("_INBOX.test.*")
    body = {"jsonrpc": "2.0", "method": "game.open", "params": {"d": 1}, "id": 7}
    peer.publish("rtgw.rpc.game.open", json.dumps(body).encode(), "_INBOX.test.1")
    invocation = service.next()
    assert invocation["params"] == {"d": 1}
    service.send({"jsonrpc": "2.0", "result": {"ok": 1}, "id": invocation["id"]})
    response = json.loads(peer.next_message().payload)
    assert response == {"jsonrpc": "2.0", "result": {"ok": 1}, "id": 7}
    service.close()


def test_no_call_channel_on_nats(nats_gateways):
    """On NATS a gateway takes calls only in its queue groups.

    A call published on the Redis bus's call channel of B reaches no callee:
    the real call sent after it is the first the callee sees.
    """
    (a, b), peer = nats_gateways
    service = Peer(b.url, "world-svc", roles=("service",))
    service.request("rpc.register", {"procedure": "game.open"}, 1)
    assert "result" in service.answer(1)
    forged = {
        "op": "call",
        "id": 1,
        "g": "gw-a",
        "procedure": "game.open",
        "params": {"forged": True},
        "timeout_ms": 5000,
    }
    peer.publish(call_channel("gw-b"), json.dumps(forged).encode())
    peer.subscribe("_INBOX.flush")  # its PONG: the server has routed the forgery
    player = Peer(a.url, "alice")
    player.request("game.open", {"real": True}, 10)
    invocation = service.next()
    assert invocation["params"]["real"] is True
    service.send({"jsonrpc": "2.0", "result": {}, "id": invocation["id"]})
    assert player.answer(10) == {"jsonrpc": "2.0", "result": {}, "id": 10}
    service.close()
    player.close()


def test_publication_from_nats_reaches_players(nats_gateways):
    """rtgw.publish.<topic> {type, data}: published once, bad ones refused."""
    (a, b), peer = nats_gateways
    players = [Peer(a.url, "alice"), Peer(b.url, "bob")]
    for player in players:
        player.request("pubsub.subscribe", {"topic": "chat.lobby"}, 1)
        assert "result" in player.answer(1)
    peer.subscribe("_INBOX.pub.*")
    event = {"type": "chat.message", "data": {"text": "hi"}}
    peer.publish("rtgw.publish.chat.lobby", json.dumps(event).encode(), "_INBOX.pub.1")
    assert "result" in json.loads(peer.next_message().payload)
    for player in players:
        delivered = player.next()
        assert delivered["method"] == "chat.message"
        assert delivered["params"]["data"] == {"text": "hi"}
        assert "from" not in delivered["params"]
    peer.publish("rtgw.publish.chat.lobby", b'{"type": "nope"}', "_INBOX.pub.2")
    assert json.loads(peer.next_message().payload)["error"]["code"] == -32602
    peer.publish("rtgw.publish.chat.lobby", b"[1]", "_INBOX.pub.3")
    assert json.loads(peer.next_message().payload)["error"]["code"] == -32602
    for player in players:
        player.close()
