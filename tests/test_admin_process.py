"""The admin methods on real gateway processes, spoken to with ``websockets``.

One gateway traces a player's frames to an admin over real sockets; two
gateways on a real redis-server (Redis pub/sub, then NATS as the bus) list
each other's connections, and one killed is listed as missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from rtgateway.testing import GatewayProcess, make_config, token_for

pytestmark = pytest.mark.integration

TOKENS = make_config()


class Peer:
    """A websockets client that keeps every message it reads."""

    def __init__(self, url: str, sub: str, roles: list[str] | None = None) -> None:
        self.token = token_for(TOKENS, sub, roles=roles or [])
        self.ws = connect(
            url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=10,
        )
        self.received: list[dict] = []
        self.welcome = self.next()["params"]
        self._ids = 0

    def next(self, timeout: float = 10.0) -> dict:
        message = json.loads(self.ws.recv(timeout=timeout))
        self.received.append(message)
        return message

    def call(self, method: str, params: dict | None = None) -> dict:
        self._ids += 1
        self.ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": method,
                    "params": params or {},
                    "id": self._ids,
                }
            )
        )
        while True:
            message = self.next()
            if message.get("id") == self._ids:
                return message

    def wait_for(
        self, method: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict]:
        """The params of the first ``count`` notifications of ``method``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m["params"] for m in self.received if m.get("method") == method]
            if len(found) >= count:
                return found[:count]
            self.next(max(0.01, deadline - time.monotonic()))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """One gateway process with a small trace rate."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("admin"),
        {"admin": {"trace_rate": 20, "trace_max_frame_bytes": 300}},
    ).start()
    yield process
    process.stop()
    assert "Traceback" not in process.log(), process.log()


def test_a_player_is_refused_every_admin_method(gateway):
    """A JWT without the admin role gets -32001 over a real socket."""
    player = Peer(gateway.url, "mallory")
    try:
        for method in ("admin.connections", "admin.zones", "admin.stats"):
            assert player.call(method)["error"]["code"] == -32001
        error = player.call("admin.trace", {"session_id": player.welcome["session_id"]})
        assert error["error"]["code"] == -32001
    finally:
        player.close()


def test_trace_shows_a_players_frames_live_and_ends_with_it(gateway):
    """Frames in and out reach the admin as they happen, no token among them."""
    player = Peer(gateway.url, "alice")
    admin = Peer(gateway.url, "root", roles=["admin"])
    try:
        session_id = player.welcome["session_id"]
        listed = admin.call("admin.connections", {"filter": session_id})["result"]
        assert [row["player_id"] for row in listed["connections"]] == ["alice"]
        assert admin.call("admin.trace", {"session_id": session_id})["result"]
        player.call("sys.ping")
        player.call("session.refresh", {"token": player.token})
        shown = admin.wait_for("admin.frame", 4)
        assert [(f["direction"], f["method"]) for f in shown] == [
            ("in", "sys.ping"),
            ("out", None),
            ("in", "session.refresh"),
            ("out", None),
        ]
        assert "server_time_ms" in shown[1]["frame"]["result"]
        assert shown[2]["frame"]["params"] == {"token": "[redacted]"}
        assert player.token not in json.dumps(admin.received)
        assert player.welcome["resume_token"] not in json.dumps(admin.received)
        player.close()
        (ended,) = admin.wait_for("admin.trace_ended")
        assert ended["session_id"] == session_id and ended["shown"] == 4
    finally:
        player.close()
        admin.close()


def test_trace_rate_is_bounded_over_real_sockets(gateway):
    """A burst over trace_rate shows trace_rate frames and counts the rest."""
    player = Peer(gateway.url, "bob")
    admin = Peer(gateway.url, "root", roles=["admin"])
    try:
        session_id = player.welcome["session_id"]
        admin.call("admin.trace", {"session_id": session_id})
        for _ in range(50):
            player.call("sys.ping")
        counts = admin.call("admin.untrace", {"session_id": session_id})["result"]
        assert counts["shown"] + counts["dropped"] == 100
        # 20 at once, and 20 a second after that: the pings take well under 2 s.
        assert 20 <= counts["shown"] < 60 and counts["dropped"] > 0
        frames = [m for m in admin.received if m.get("method") == "admin.frame"]
        assert len(frames) == counts["shown"]
    finally:
        player.close()
        admin.close()


def polled(ask: Callable[[], dict], done: Callable[[dict], bool]) -> dict:
    """``ask()`` again until ``done`` with its result, or 10 s have passed."""
    deadline = time.monotonic() + 10
    while True:
        result = ask()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def answered_by_both(admin: Peer, method: str, params: dict | None = None) -> dict:
    """The result of ``method`` once both gateways answer it (they meet first)."""
    result = polled(
        lambda: admin.call(method, params)["result"],
        lambda result: result["gateways"] == ["gw1", "gw2"],
    )
    assert result["gateways"] == ["gw1", "gw2"] and result["missing"] == []
    return result


@pytest.fixture(params=["redis", "nats"])
def two_gateways(request, tmp_path, redis_server, nats_server):
    """Two gateway processes on the shared redis-server, Redis or NATS the bus."""
    redis_server.flush()
    backend = {"kind": "redis", "redis_url": redis_server.url}
    if request.param == "nats":
        backend.update(bus="nats", nats_url=[nats_server.url])
    started = [
        GatewayProcess(
            tmp_path,
            {
                "backend": backend,
                "admin": {"cluster_timeout_s": 1},
                "zones": {"arena": {"fields": {"x": {"type": "number"}}}},
            },
            name=name,
        ).start()
        for name in ("gw1", "gw2")
    ]
    yield started
    for process in started:
        process.stop()


def test_connections_of_both_gateways_then_one_missing(two_gateways):
    """An admin on gw1 sees gw2's players; gw2 killed, it is listed as missing."""
    first, second = two_gateways
    player = Peer(second.url, "carol")
    admin = Peer(first.url, "root", roles=["admin"])
    try:
        result = answered_by_both(admin, "admin.connections")
        rows = {(r["gateway_id"], r["player_id"]) for r in result["connections"]}
        assert rows == {("gw1", "root"), ("gw2", "carol")}
        second.kill()
        with pytest.raises(ConnectionClosed):
            player.next(timeout=10)
        started = time.monotonic()
        result = admin.call("admin.connections")["result"]
        assert time.monotonic() - started >= 0.9
        assert result["gateways"] == ["gw1"] and result["missing"] == ["gw2"]
    finally:
        player.close()
        admin.close()


def test_presence_counts_the_players_of_both_gateways(two_gateways):
    """An admin on gw1 counts gw2's players by status and zone, from Redis."""
    first, second = two_gateways
    carol = Peer(second.url, "carol")
    dave = Peer(first.url, "dave")
    admin = Peer(first.url, "root", roles=["admin"])
    try:
        carol.call("presence.set", {"status": "away", "zone": "forest"})
        dave.call("presence.set", {"status": "invisible", "zone": "forest"})
        result = answered_by_both(admin, "admin.presence")
        assert result["players"] == 3
        assert result["statuses"] == {
            "online": 1,
            "away": 1,
            "busy": 0,
            "invisible": 1,
        }
        assert result["zones"] == [{"zone": "forest", "players": 2}]
        assert result["cursor"] is None
    finally:
        for peer in (carol, dave, admin):
            peer.close()


def test_zone_shows_the_entities_of_a_player_on_the_other_gateway(two_gateways):
    """An admin on gw1 reads, from Redis, the entity of a player on gw2."""
    first, second = two_gateways
    erin = Peer(second.url, "erin")
    admin = Peer(first.url, "root", roles=["admin"])
    try:
        erin.call("state.join", {"zone": "arena", "fields": {"x": 4.25}})
        erin.call("state.update", {"fields": {"x": 8.5}})
        result = polled(
            lambda: admin.call("admin.zone", {"zone": "arena"})["result"],
            lambda result: (
                "player.erin" in result["entities"]
                and result["entities"]["player.erin"]["fields"] == {"x": 8.5}
            ),
        )
        entity = result["entities"]["player.erin"]
        assert result["count"] == 1 and result["truncated"] is False
        assert entity == {"v": 2, "fields": {"x": 8.5}}
    finally:
        erin.close()
        admin.close()


def traced_row(admin: Peer, player: str, traced: bool) -> dict:
    """The player's row once its ``traced`` flag is ``traced``."""
    result = polled(
        lambda: admin.call("admin.connections", {"filter": player})["result"],
        lambda result: [r["traced"] for r in result["connections"]] == [traced],
    )
    (row,) = result["connections"]
    return row


def test_trace_across_gateways_live_then_untraced(two_gateways):
    """An admin on gw1 traces a player of gw2: frames live, untrace, then none."""
    first, second = two_gateways
    player = Peer(second.url, "frank")
    admin = Peer(first.url, "root", roles=["admin"])
    try:
        answered_by_both(admin, "admin.connections")
        session_id = player.welcome["session_id"]
        assert admin.call("admin.trace", {"session_id": session_id})["result"]
        player.call("sys.ping")
        player.call("session.refresh", {"token": player.token})
        shown = admin.wait_for("admin.frame", 4)
        assert [(f["direction"], f["method"]) for f in shown] == [
            ("in", "sys.ping"),
            ("out", None),
            ("in", "session.refresh"),
            ("out", None),
        ]
        assert shown[2]["frame"]["params"] == {"token": "[redacted]"}
        assert player.token not in json.dumps(admin.received)
        counts = admin.call("admin.untrace", {"session_id": session_id})["result"]
        assert counts == {"session_id": session_id, "shown": 4, "dropped": 0}
        assert traced_row(admin, "frank", False)["gateway_id"] == "gw2"
    finally:
        player.close()
        admin.close()


def test_trace_across_gateways_ends_with_the_player_or_the_admin(two_gateways):
    """The player leaving gw2 ends the trace; an admin leaving gw1 ends its own."""
    first, second = two_gateways
    player = Peer(second.url, "gina")
    other = Peer(second.url, "hank")
    admin = Peer(first.url, "root", roles=["admin"])
    watcher = Peer(first.url, "root2", roles=["admin"])
    try:
        answered_by_both(admin, "admin.connections")
        session_id = player.welcome["session_id"]
        admin.call("admin.trace", {"session_id": session_id})
        player.call("sys.ping")
        player.close()
        (ended,) = admin.wait_for("admin.trace_ended")
        assert ended == {
            "session_id": session_id,
            "shown": 2,
            "dropped": 0,
            "reason": "disconnected",
        }
        admin.call("admin.trace", {"session_id": other.welcome["session_id"]})
        traced_row(watcher, "hank", True)
        admin.close()
        traced_row(watcher, "hank", False)
    finally:
        for peer in (player, other, admin, watcher):
            peer.close()


def test_trace_ends_when_the_owning_gateway_dies(two_gateways):
    """gw2 SIGKILLed: the admin on gw1 is told gateway_lost within 3 timeouts."""
    first, second = two_gateways
    player = Peer(second.url, "ivan")
    admin = Peer(first.url, "root", roles=["admin"])
    try:
        answered_by_both(admin, "admin.connections")
        admin.call("admin.trace", {"session_id": player.welcome["session_id"]})
        second.kill()
        started = time.monotonic()
        (ended,) = admin.wait_for("admin.trace_ended", timeout=10)
        assert ended["reason"] == "gateway_lost"
        assert 2 <= time.monotonic() - started <= 6
    finally:
        player.close()
        admin.close()
