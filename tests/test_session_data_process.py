"""Session data across two twistd gateways on a real redis-server.

A backend service on gateway B follows ``session.events`` and asks
``session.get`` about a player whose session starts on gateway A, is
dropped, resumed on B and closed: it sees each state and each event.
"""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect

from rtgateway.testing import GatewayProcess, make_config, token_for

pytestmark = pytest.mark.integration

TOKENS = make_config()
EVENTS = ("session.started", "session.resumed", "session.ended")


class Peer:
    """A JSON connection that keeps the notifications met while awaiting answers."""

    def __init__(self, url: str, sub: str, roles: tuple[str, ...] = ()) -> None:
        token = token_for(TOKENS, sub, roles=roles)
        self.ws = connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
        ).__enter__()
        self.notifications: list[dict] = []
        self.welcome = json.loads(self.ws.recv(timeout=10))["params"]
        self._id = 0

    def call(self, method: str, params: dict, timeout: float = 10.0) -> dict:
        self._id += 1
        request = {"jsonrpc": "2.0", "method": method, "params": params}
        self.ws.send(json.dumps({**request, "id": self._id}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=deadline - time.monotonic()))
            if "method" in message:
                self.notifications.append(message)
            elif message.get("id") == self._id:
                return message

    def lifecycle(self, count: int, timeout: float = 10.0) -> list[tuple[str, dict]]:
        """The first ``count`` session events, waiting for them if need be."""
        deadline = time.monotonic() + timeout
        while True:
            events = [
                (m["method"], m["params"]["data"])
                for m in self.notifications
                if m["method"] in EVENTS
            ]
            if len(events) >= count:
                return events
            message = json.loads(self.ws.recv(timeout=deadline - time.monotonic()))
            if "method" in message:
                self.notifications.append(message)

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def gateways(tmp_path, redis_server):
    """Gateways A and B on the shared redis-server, emptied first."""
    redis_server.flush()
    sections = {
        "backend": {"kind": "redis", "redis_url": redis_server.url},
        "session": {"resume_window_s": 30},
    }
    started = [
        GatewayProcess(tmp_path, sections, name=name).start()
        for name in ("gw-a", "gw-b")
    ]
    yield started
    for process in started:
        process.stop()
        assert "Traceback" not in process.log(), process.log()


def sessions_of(service: Peer, player_id: str) -> list[dict]:
    return service.call("session.get", {"player_id": player_id})["result"]["sessions"]


def wait_for_state(service: Peer, state: str, gateway_id: str | None) -> dict:
    """The player's one session once it is in ``state`` (detaching is async)."""
    deadline = time.monotonic() + 10
    while True:
        sessions = sessions_of(service, "alice")
        if len(sessions) == 1 and sessions[0]["state"] == state:
            assert sessions[0]["gateway_id"] == gateway_id
            return sessions[0]
        assert time.monotonic() < deadline, sessions
        time.sleep(0.05)


def test_service_on_b_follows_a_session_from_a(gateways):
    """Start on A, drop, resume on B, close: session.get and events agree."""
    a, b = gateways
    service = Peer(b.url, "matchmaker", roles=("service",))
    assert "result" in service.call("pubsub.subscribe", {"topic": "session.events"})
    player = Peer(a.url, "alice")
    assert (
        player.call("pubsub.subscribe", {"topic": "session.events"})["error"]["code"]
        == -32001
    )
    session_id = player.welcome["session_id"]
    attached = wait_for_state(service, "attached", "gw-a")
    assert attached["session_id"] == session_id
    assert service.call("session.get", {"player_id": "bob"})["result"]["sessions"] == []

    player.close()
    detached = wait_for_state(service, "detached", None)
    assert detached["resume_until_ms"] == detached["detached_ms"] + 30_000
    # The counters of the closed connection are in the store now.
    assert detached["analytics"]["messages_in"] >= 1

    back = Peer(b.url, "alice")
    resume = {"resume_token": player.welcome["resume_token"]}
    assert back.call("session.resume", resume)["result"]["session_id"] == session_id
    resumed = wait_for_state(service, "attached", "gw-b")
    assert resumed["analytics"]["reconnects"] == 1
    assert back.call("session.close", {})["result"] == {}

    events = service.lifecycle(5)
    assert [
        (kind, data["session_id"], data["gateway_id"]) for kind, data in events
    ] == [
        ("session.started", session_id, "gw-a"),
        ("session.started", back.welcome["session_id"], "gw-b"),
        ("session.ended", back.welcome["session_id"], "gw-b"),
        ("session.resumed", session_id, "gw-b"),
        ("session.ended", session_id, "gw-b"),
    ]
    ended = events[-1][1]
    assert ended["reason"] == "closed"
    assert ended["analytics"]["close_code"] == 1000
    assert ended["analytics"]["reconnects"] == 1
    assert ended["analytics"]["messages_in"] >= 2
    assert sessions_of(service, "alice") == []
    service.close()
