"""A one-minute soak: after churn, a gateway holds what it held before.

A real ``twistd`` gateway is churned by third-party ``websockets`` clients:
each connection subscribes to a reliable topic, publishes, sets a presence
zone, watches a player, joins a state zone and moves, then leaves in one of
three ways (``session.close``; a dropped connection, its session detached;
a drop followed by ``session.resume`` on a new connection, then a close).
The resume window is short (:data:`RESUME_WINDOW_S`), so that every
detached session expires within the test. The gateway is read from outside
(``/proc`` for resident memory and open files, ``/metrics`` for its
delayed calls and connections):

- after a warm-up round (imports, caches, the allocator's pools and the
  zone are in place) and the expiry of its sessions: the baseline;
- after two more rounds of :data:`ROUND` connections each and the expiry of
  their sessions: open files and delayed calls back to the baseline
  exactly, no connection left, and resident memory within
  :data:`RSS_BOUND_BYTES` of it.

A gateway that kept anything per connection (the protocol, its session, a
timer, a subscription) would keep it :data:`CHURNED` times. Measured on
this gateway: a gateway that keeps every protocol object (a module-level
list of them) grows about 16 KB per churned connection; without a leak,
the growth is about 2 KB per connection, the allocator's pools settling.
The bound, 6 KB per connection, lies between the two. A timer left behind
shows in the delayed calls, a socket in the open files, both exactly.

The clients do not offer permessage-deflate: zlib allocates its windows
(hundreds of kilobytes per connection) with ``malloc``, outside Python's
allocator, and the C heap keeps pages of freed windows, so that resident
memory climbs towards a plateau over thousands of deflate connections
while the memory Python traces stays flat. That is the allocator's high
water, which ``python -m bench soak`` watches over many minutes, not a
leak a one-minute test can tell apart.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from rtgateway.testing import GatewayProcess, make_config, token_for

pytestmark = [pytest.mark.integration, pytest.mark.long]

TOKENS = make_config()
RESUME_WINDOW_S = 2.0
#: Connections per churn round, and how many are open at a time.
ROUND = 400
CONCURRENCY = 40
ROUNDS = 2
CHURNED = ROUND * ROUNDS
#: Six kilobytes per churned connection (see the module's docstring).
RSS_BOUND_BYTES = CHURNED * 6 * 1024
#: How long the gateway may take to let go once the resume window ended.
SETTLE_S = 15.0
CALL_TIMEOUT_S = 10.0
ROUND_TIMEOUT_S = 25.0
SETTINGS = {
    "session": {"resume_window_s": RESUME_WINDOW_S},
    "limits": {"max_connections_per_ip": 1000},
    "topics.soak": {
        "subscribe": "any",
        "publish": "any",
        "history_size": 100,
        "history_ttl_s": 60,
    },
    'events."soak.note"': {
        "delivery": "reliable",
        "schema": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
    },
    "zones.yard": {
        "position": ["x", "y"],
        "fields": {
            "x": {"type": "number", "quantum": 0.01},
            "y": {"type": "number", "quantum": 0.01},
        },
    },
}


class Client:
    """One websockets connection making JSON-RPC calls one at a time."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = 0
        self.welcome: dict = {}

    @classmethod
    async def open(cls, url: str, player: str) -> Client:
        ws = await connect(
            url,
            additional_headers={"Authorization": f"Bearer {token_for(TOKENS, player)}"},
            open_timeout=CALL_TIMEOUT_S,
            compression=None,
        )
        client = cls(ws)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), CALL_TIMEOUT_S))
        assert welcome["method"] == "session.welcome", welcome
        client.welcome = welcome["params"]
        return client

    async def call(self, method: str, params: dict) -> dict:
        """The call's result; pushes (events, state) are read past."""
        self.ids += 1
        request = {"jsonrpc": "2.0", "method": method, "params": params}
        await self.ws.send(json.dumps({**request, "id": self.ids}))
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            message = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if message.get("id") == self.ids:
                assert "result" in message, (method, message)
                return message["result"]

    def drop(self) -> None:
        """Lose the connection (a TCP reset): the session is detached."""
        self.ws.transport.abort()


async def one_connection(url: str, number: int) -> None:
    """Everything a player does, then one of three ways to leave."""
    player = f"p{number % 200}"
    client = await Client.open(url, player)
    subscribed = await client.call("pubsub.subscribe", {"topic": "soak.chat"})
    await client.call(
        "pubsub.publish", {"topic": "soak.chat", "type": "soak.note", "data": {"n": 1}}
    )
    await client.call("presence.set", {"status": "online", "zone": "lobby"})
    await client.call("presence.watch", {"players": [f"p{(number + 1) % 200}"]})
    await client.call("state.join", {"zone": "yard", "fields": {"x": 1.0, "y": 2.0}})
    # A player's entity outlives a dropped connection for the resume window
    # and a new session takes it over with its last input: input_seq grows
    # with ``number`` across all of a player's connections.
    update = {"fields": {"x": 1.5}, "input_seq": number + 1}
    await client.call("state.update", update)
    way = number % 3
    if way == 0:
        await client.call("session.close", {})
        await client.ws.close()
        return
    client.drop()
    if way == 1:
        return
    back = await Client.open(url, player)
    position = {"offset": subscribed["offset"], "epoch": subscribed["epoch"]}
    resumed = await back.call(
        "session.resume",
        {
            "resume_token": client.welcome["resume_token"],
            "positions": {"soak.chat": position},
        },
    )
    assert resumed["resumed"] is True
    await back.ws.close()


async def churn(gateway: GatewayProcess, first: int, count: int) -> dict:
    """``count`` connections, :data:`CONCURRENCY` at a time; the most the
    gateway held meanwhile (read every half second)."""
    gate = asyncio.Semaphore(CONCURRENCY)
    most = {"fds": 0.0, "delayed": 0.0, "connections": 0.0}

    async def gated(number: int) -> None:
        async with gate:
            await one_connection(gateway.url, number)

    async def watch() -> None:
        for _ in range(int(ROUND_TIMEOUT_S * 2)):
            now = await asyncio.to_thread(reading, gateway)
            for key in most:
                most[key] = max(most[key], now[key])
            await asyncio.sleep(0.5)

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait_for(
            asyncio.gather(*(gated(first + n) for n in range(count))),
            ROUND_TIMEOUT_S,
        )
    finally:
        watcher.cancel()
    return most


def reading(gateway: GatewayProcess) -> dict[str, float]:
    pid = gateway.process.pid
    return {
        "rss": gateway.rss_bytes(),
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
        "delayed": gateway.metric("rtgateway_reactor_delayed_calls"),
        "connections": gateway.metric("rtgateway_connections"),
    }


def settled(gateway: GatewayProcess, baseline: dict | None) -> dict[str, float]:
    """The gateway's reading once the resume window is over, no connection
    is left and open files and delayed calls hold still for a second; with
    a ``baseline``, once they are back to it (or, either way,
    :data:`SETTLE_S` later, as they are then)."""
    time.sleep(RESUME_WINDOW_S)
    deadline = time.monotonic() + SETTLE_S
    previous = reading(gateway)
    while True:
        time.sleep(1.0)
        now = reading(gateway)
        target = baseline or previous
        still = all(now[key] == target[key] for key in ("fds", "delayed"))
        if (now["connections"] == 0 and still) or time.monotonic() > deadline:
            return now
        previous = now


@pytest.fixture
def gateway(tmp_path):
    process = GatewayProcess(tmp_path, SETTINGS).start()
    yield process
    process.stop()


def test_memory_and_open_files_return_to_baseline_after_churn(gateway):
    """Two rounds of churn leave the gateway as it was after the warm-up."""
    asyncio.run(churn(gateway, 0, ROUND))
    baseline = settled(gateway, None)
    assert baseline["connections"] == 0
    loaded = [asyncio.run(churn(gateway, n * ROUND, ROUND)) for n in (1, ROUNDS)]
    after = settled(gateway, baseline)
    # What is checked came and went: connections with their files and
    # timers (a heartbeat each) were there during the churn.
    for most in loaded:
        assert most["connections"] >= 5, most
        assert most["fds"] >= baseline["fds"] + 5, most
        assert most["delayed"] >= baseline["delayed"] + 50, most
    assert after["connections"] == 0
    assert after["fds"] == baseline["fds"], (baseline, after)
    assert after["delayed"] == baseline["delayed"], (baseline, after)
    growth = after["rss"] - baseline["rss"]
    assert growth < RSS_BOUND_BYTES, (
        f"RSS grew {growth / 1024:.0f} KiB over {CHURNED} connections "
        f"({growth / CHURNED:.0f} B each); bound {RSS_BOUND_BYTES / 1024:.0f} KiB"
    )
