"""The load side of the ``soak`` scenario: every kind of traffic a gateway
carries, at a steady modest rate, for as long as the soak lasts.

One load process holds every connection, so that it alone knows which
publications were acknowledged and which receivers must have them:

- *receivers* subscribe to the reliable topic :data:`TOPIC` and watch a few
  presence players; every offset they get is counted, per receiver;
- *resumers* subscribe too, and in turn drop their connection (a TCP
  reset), stay away :data:`AWAY_S`, reconnect to the next gateway of the
  cluster and call ``session.resume`` with their position: the replay must
  fill the gap, so a resumer is checked like a receiver;
- one *publisher* publishes on :data:`TOPIC`, one request at a time, at a
  fixed rate; the offsets acknowledged are the publications every receiver
  and resumer must get exactly once;
- *presence players* call ``presence.set`` in turn, alternating their
  status (the receivers watching them get ``presence.changed``);
- *state players* are in the zone :data:`ZONE`, each sending
  ``state.update`` notifications at :data:`INPUT_HZ` as it walks a circle;
  in turn one leaves the zone and joins it again;
- *churners* arrive at a fixed rate, each with a fresh connection: it
  subscribes and sets a presence zone, joins the state zone, watches
  presence players or only pings, stays :data:`CHURN_LIFETIME_S`, and ends
  its session (``session.close``) or drops its connection (then its
  session is detached until the gateway's resume window ends).

:func:`soak_mark` returns what was counted since the previous mark, and the
completeness of the publications acknowledged before the mark less
:data:`SETTLE_S` and not yet checked; :func:`soak_stop` stops the traffic,
waits for the away resumers and for the last deliveries, and checks the
rest. A connection that closes without the load closing it is an
unexpected close; a call answered with an error, or not within
:data:`CALL_TIMEOUT_S`, is a failed call. Every loop is bounded by the
traffic's deadline and a count.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from bench.worker import Worker as _Worker
    from bench.wsclient import ClientConnection

TOPIC = "bench.soak"
#: The reliable event type of the ``bench`` namespace (:mod:`bench.topics`).
EVENT_TYPE = "bench.chat"
ZONE = "soak"
#: The presence zone churners set (``presence.set``).
LOBBY = "soak-lobby"
INPUT_HZ = 10
CALL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
AWAY_S = 1.0
CHURN_LIFETIME_S = 4.0
#: A publication is checked once it was acknowledged this long ago: time
#: for its deliveries, and for a resumer away to come back and replay it.
SETTLE_S = 5.0
#: Presence players each receiver watches.
WATCHES = 4
#: How long :func:`soak_stop` waits for resumers and deliveries.
STOP_WAIT_S = 30.0
#: Tokens outlive the soak by this much (a token that expires closes 4001).
TOKEN_MARGIN_S = 600.0
#: The largest offset gap a receiver's counts grow by at once; beyond it an
#: offset is out of any sensible range and counted as an error.
MAX_OFFSET_STEP = 1_000_000

DEFAULTS = {
    "receivers": 100,
    "resumers": 40,
    "presence_players": 40,
    "state_players": 30,
    "publish_per_s": 20.0,
    "resumes_per_s": 2.0,
    "presence_per_s": 10.0,
    "rejoins_per_s": 1.0,
    "churn_per_s": 20.0,
}
TINY = {
    "receivers": 5,
    "resumers": 4,
    "presence_players": 4,
    "state_players": 4,
    "publish_per_s": 10.0,
    "resumes_per_s": 1.0,
    "presence_per_s": 2.0,
    "rejoins_per_s": 1.0,
    "churn_per_s": 4.0,
}


def zone_table() -> dict[str, Any]:
    """The ``[zones.soak]`` table: a 20 Hz zone of walking players."""
    return {
        "fast_hz": 20,
        "slow_hz": 10,
        "position": ["x", "y"],
        "fields": {
            "x": {"type": "number", "quantum": 0.01},
            "y": {"type": "number", "quantum": 0.01},
        },
    }


class Receiver:
    """A connection that must get every acknowledged publication once.

    ``counts[offset - base]`` is how many times the offset arrived; the
    receiver is owed the offsets from ``base`` on, until ``end`` (set when
    a resume fails: what it missed after that is not the gateway's debt).
    """

    def __init__(self, soak: Soak, connection: ClientConnection, number: int):
        self.soak = soak
        self.connection = connection
        #: The player's number: its id, and the gateway it is on.
        self.number = number
        self.url_index = number
        self.base = 0
        self.end: int | None = None
        self.epoch: str | None = None
        self.last = 0
        self.counts = bytearray()
        self.away = False

    def subscribed(self, result: dict[str, Any]) -> None:
        self.base = result["offset"] + 1
        self.last = result["offset"]
        self.epoch = result["epoch"]

    def on_event(self, document: Any, now: float) -> None:
        if type(document) is not dict:
            return
        method = document.get("method")
        if method == "presence.changed":
            self.soak.tally["presence_changes"] += 1
            return
        if method != EVENT_TYPE:
            return
        params = document["params"]
        if params.get("topic") != TOPIC:
            return
        offset = params.get("offset")
        index = offset - self.base if type(offset) is int else -1
        if params.get("epoch") != self.epoch or not 0 <= index < MAX_OFFSET_STEP:
            self.soak.tally["stray_events"] += 1
            return
        counts = self.counts
        if index >= len(counts):
            counts.extend(bytes(index + 1 - len(counts)))
        if counts[index] < 255:
            counts[index] += 1
        self.last = max(self.last, offset)

    def count(self, offset: int) -> int:
        index = offset - self.base
        return self.counts[index] if 0 <= index < len(self.counts) else 0

    def owes(self, offset: int) -> bool:
        return offset >= self.base and (self.end is None or offset <= self.end)


class Soak:
    """The connections, loops and counters of one load process's soak."""

    def __init__(self, worker: _Worker, sizes: dict[str, Any], seconds: float):
        self.worker = worker
        self.sizes = sizes
        self.urls = worker.plan.urls
        self.tally: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.receivers: list[Receiver] = []
        self.resumers: list[Receiver] = []
        self.resume_tokens: dict[int, str] = {}
        self.publisher: ClientConnection | None = None
        self.presence: list[ClientConnection] = []
        #: None while the player leaves the zone and joins it again.
        self.state: list[ClientConnection | None] = []
        self.churning: set[ClientConnection] = set()
        #: (offset, time acknowledged), in order of acknowledgement.
        self.acked: list[tuple[int, float]] = []
        self.checked = 0
        self.closed_seen: set[int] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.input_seq: dict[int, int] = {}
        self._tokens = self._mint(seconds)

    # -- tokens and connections --------------------------------------------

    def _mint(self, seconds: float) -> dict[str, str]:
        from rtgateway.config import parse_config
        from rtgateway.tokens import mint_token

        auth = parse_config(
            {"auth": {"secret": self.worker.plan.secret}},
            source="<bench>",
            base_dir=Path.cwd(),
            environ={},
        ).auth
        ttl = seconds + TOKEN_MARGIN_S
        first = self.worker.plan.first_player
        names = [f"s{first + i}" for i in range(self.stable_count)]
        names += [f"c{first + i}" for i in range(self.churn_pool)]
        return {name: mint_token(auth, name, ttl_s=ttl) for name in names}

    @property
    def stable_count(self) -> int:
        s = self.sizes
        return (
            s["receivers"]
            + s["resumers"]
            + s["presence_players"]
            + s["state_players"]
            + 1
        )

    @property
    def churn_pool(self) -> int:
        """Player ids for churners: never two open at once under one id."""
        return max(1, math.ceil(self.sizes["churn_per_s"] * (CHURN_LIFETIME_S + 30)))

    def player(self, index: int) -> str:
        return f"s{self.worker.plan.first_player + index}"

    async def connect(self, name: str, url_index: int) -> ClientConnection | None:
        connection, error = await self.worker.connect(
            self.urls[url_index % len(self.urls)],
            self._tokens[name],
            CONNECT_TIMEOUT_S,
        )
        if error is not None:
            self.tally["connect_failures"] += 1
            self.errors[f"connect: {error}"] += 1
            return None
        return connection

    async def call(
        self, connection: ClientConnection, method: str, params: Any
    ) -> dict[str, Any] | None:
        """The call's result, or None (counted) on an error or no answer."""
        try:
            reply = await asyncio.wait_for(
                connection.call(method, params), CALL_TIMEOUT_S
            )
        except (ConnectionError, TimeoutError):
            self.tally["failed_calls"] += 1
            self.errors[f"{method}: no answer"] += 1
            return None
        if "result" not in reply:
            code = (reply.get("error") or {}).get("code")
            self.tally["failed_calls"] += 1
            self.errors[f"{method}: {code}"] += 1
            return None
        return reply["result"]

    # -- setup ----------------------------------------------------------------

    async def setup(self) -> dict[str, Any]:
        s = self.sizes
        index = 0

        async def one(role: str, number: int) -> None:
            name = self.player(number)
            connection = await self.connect(name, number)
            if connection is None:
                raise RuntimeError(f"a {role} could not connect")
            if role in ("receiver", "resumer"):
                receiver = Receiver(self, connection, number)
                connection.on_event = receiver.on_event
                result = await self.call(
                    connection, "pubsub.subscribe", {"topic": TOPIC}
                )
                if result is None:
                    raise RuntimeError(f"subscribing failed: {dict(self.errors)}")
                receiver.subscribed(result)
                if role == "receiver":
                    self.receivers.append(receiver)
                    watched = [
                        self.player((number + k) % presence_count)
                        for k in range(min(WATCHES, presence_count))
                    ]
                    await self.call(connection, "presence.watch", {"players": watched})
                else:
                    self.resumers.append(receiver)
                    self.resume_tokens[id(receiver)] = connection.welcome["params"][
                        "resume_token"
                    ]
            elif role == "presence":
                self.presence.append(connection)
            elif role == "state":
                place = len(self.state)
                self.input_seq[place] = 0
                self.state.append(connection)
                connection.on_payload = self._state_payload
                joined = await self.call(connection, "state.join", self._join(place))
                if joined is None:
                    raise RuntimeError(f"joining the zone failed: {dict(self.errors)}")
            else:
                self.publisher = connection

        # Presence players come first: players 0 to presence_count - 1.
        roles = []
        presence_count = s["presence_players"]
        for role, key in (
            ("presence", "presence_players"),
            ("receiver", "receivers"),
            ("resumer", "resumers"),
            ("state", "state_players"),
        ):
            roles.extend((role, index + k) for k in range(s[key]))
            index += s[key]
        roles.append(("publisher", index))
        gate = asyncio.Semaphore(50)

        async def gated(role: str, number: int) -> None:
            async with gate:
                await one(role, number)

        await asyncio.gather(*(gated(role, number) for role, number in roles))
        if self.publisher is None:
            raise RuntimeError("no publisher")
        return {"connections": len(roles), "errors": dict(self.errors)}

    def _join(self, number: int) -> dict[str, Any]:
        x, y = self._position(number, 0.0)
        return {"zone": ZONE, "fields": {"x": x, "y": y}}

    @staticmethod
    def _position(number: int, t: float) -> tuple[float, float]:
        """Player ``number`` walks a circle of 20 m around its own centre."""
        angle = t * 0.1 + number
        cx, cy = 50.0 + (number % 10) * 30.0, 50.0 + (number // 10 % 10) * 30.0
        return round(cx + 20 * math.cos(angle), 2), round(cy + 20 * math.sin(angle), 2)

    def _state_payload(self, payload: bytes) -> bool:
        """State pushes are counted, not decoded: what a client does with
        them is not what the soak measures."""
        head = payload[:48]
        if b'"method"' in head and b'"state.' in head:
            self.tally["state_messages"] += 1
            return True
        return False

    # -- the traffic ------------------------------------------------------------

    def start(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        self.tasks = [
            asyncio.ensure_future(loop(until))
            for loop in (
                self._publish_loop,
                self._resume_loop,
                self._presence_loop,
                self._state_loop,
                self._rejoin_loop,
                self._churn_loop,
            )
        ]

    async def _every(self, per_s: float, until: float, step: Any) -> None:
        """Call ``step(n)`` ``per_s`` times a second until ``until``, on a
        schedule (a late step does not push the next ones back)."""
        if per_s <= 0:
            return
        interval = 1.0 / per_s
        began = time.monotonic()
        most = int((until - began) * per_s) + 1
        for n in range(most):
            if self.stopping:
                return
            due = began + n * interval
            if due >= until:
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await step(n)

    async def _publish_loop(self, until: float) -> None:
        publisher = self.publisher

        async def publish(n: int) -> None:
            data = {"text": "soak", "seq": n, "t": time.time()}
            result = await self.call(
                publisher,
                "pubsub.publish",
                {"topic": TOPIC, "type": EVENT_TYPE, "data": data},
            )
            if result is not None and "offset" in result:
                self.acked.append((result["offset"], time.monotonic()))
                self.tally["published"] += 1

        await self._every(self.sizes["publish_per_s"], until, publish)

    async def _resume_loop(self, until: float) -> None:
        if not self.resumers:
            return
        running: set[asyncio.Task[None]] = set()

        async def resume(n: int) -> None:
            receiver = self.resumers[n % len(self.resumers)]
            if receiver.away or receiver.end is not None:
                return
            task = asyncio.ensure_future(self._resume_one(receiver))
            running.add(task)
            task.add_done_callback(running.discard)

        await self._every(self.sizes["resumes_per_s"], until, resume)
        if running:
            await asyncio.wait(running, timeout=STOP_WAIT_S)

    async def _resume_one(self, receiver: Receiver) -> None:
        receiver.away = True
        position = {"offset": receiver.last, "epoch": receiver.epoch}
        old = receiver.connection
        self._expect_closed(old)
        old.on_event = None
        old.abort()
        await asyncio.sleep(AWAY_S)
        receiver.url_index += 1
        connection = await self.connect(
            self.player(receiver.number), receiver.url_index
        )
        if connection is None:
            receiver.end = receiver.last
            receiver.away = False
            return
        connection.on_event = receiver.on_event
        receiver.connection = connection
        result = await self.call(
            connection,
            "session.resume",
            {
                "resume_token": self.resume_tokens[id(receiver)],
                "positions": {TOPIC: position},
            },
        )
        if result is None or not result["recovered"].get(TOPIC):
            self.errors["session.resume: not recovered"] += result is not None
            receiver.end = receiver.last
        else:
            self.tally["resumes"] += 1
        receiver.away = False

    async def _presence_loop(self, until: float) -> None:
        async def change(n: int) -> None:
            connection = self.presence[n % len(self.presence)]
            status = "away" if (n // len(self.presence)) % 2 == 0 else "online"
            if await self.call(connection, "presence.set", {"status": status}):
                self.tally["presence_sets"] += 1

        if self.presence:
            await self._every(self.sizes["presence_per_s"], until, change)

    async def _state_loop(self, until: float) -> None:
        began = time.monotonic()

        async def move(n: int) -> None:
            t = time.monotonic() - began
            for index, connection in enumerate(self.state):
                if connection is None:
                    continue  # leaving or joining again
                x, y = self._position(index, t)
                self.input_seq[index] += 1
                connection.send_encoded(
                    orjson.dumps(
                        {
                            "jsonrpc": "2.0",
                            "method": "state.update",
                            "params": {
                                "fields": {"x": x, "y": y},
                                "input_seq": self.input_seq[index],
                            },
                        }
                    )
                )
                self.tally["state_inputs"] += 1

        if self.state:
            await self._every(INPUT_HZ, until, move)

    async def _rejoin_loop(self, until: float) -> None:
        async def rejoin(n: int) -> None:
            index = n % len(self.state)
            connection = self.state[index]
            if connection is None:
                return
            self.state[index] = None  # no inputs while out of the zone
            left = await self.call(connection, "state.leave", {})
            joined = await self.call(connection, "state.join", self._join(index))
            self.state[index] = connection
            if left is not None and joined is not None:
                self.tally["rejoins"] += 1

        if self.state:
            await self._every(self.sizes["rejoins_per_s"], until, rejoin)

    async def _churn_loop(self, until: float) -> None:
        running: set[asyncio.Task[None]] = set()
        first = self.worker.plan.first_player

        async def arrive(n: int) -> None:
            name = f"c{first + n % self.churn_pool}"
            task = asyncio.ensure_future(self._churn_one(n, name))
            running.add(task)
            task.add_done_callback(running.discard)

        await self._every(self.sizes["churn_per_s"], until, arrive)
        if running:
            await asyncio.wait(running, timeout=STOP_WAIT_S)

    async def _churn_one(self, n: int, name: str) -> None:
        connection = await self.connect(name, n)
        if connection is None:
            return
        self.churning.add(connection)
        connection.on_payload = self._state_payload
        self.tally["churn_opened"] += 1
        kind = n % 4
        if kind == 0:
            await self.call(connection, "pubsub.subscribe", {"topic": TOPIC})
            await self.call(connection, "presence.set", {"zone": LOBBY})
        elif kind == 1:
            await self.call(connection, "state.join", self._join(n))
        elif kind == 2 and self.presence:
            watched = [self.player(n % len(self.presence))]
            await self.call(connection, "presence.watch", {"players": watched})
        else:
            await self.call(connection, "sys.ping", {})
        await asyncio.sleep(CHURN_LIFETIME_S)
        if not connection.open:
            self._unexpected(connection)
        elif (n // 4) % 2 == 0:
            await self.call(connection, "session.close", {})
        self.churning.discard(connection)
        connection.abort()
        self.tally["churn_closed"] += 1

    # -- closes -------------------------------------------------------------------

    def _expect_closed(self, connection: ClientConnection) -> None:
        self.closed_seen.add(id(connection))

    def _unexpected(self, connection: ClientConnection) -> None:
        if id(connection) not in self.closed_seen:
            self.closed_seen.add(id(connection))
            self.tally["unexpected_closes"] += 1
            self.errors[f"closed {connection.close_code}"] += 1

    def _check_stable(self) -> None:
        stable = [r.connection for r in (*self.receivers, *self.resumers) if not r.away]
        stable += [c for c in self.presence if c is not None]
        stable += [c for c in self.state if c is not None]
        if self.publisher is not None:
            stable.append(self.publisher)
        for connection in stable:
            if not connection.open:
                self._unexpected(connection)

    # -- checking -------------------------------------------------------------------

    def completeness(self, cutoff: float) -> dict[str, int]:
        """Check the publications acknowledged before ``cutoff`` (monotonic)
        and not checked yet: each owed to every receiver and resumer."""
        owed = once = missing = repeated = 0
        everyone = (*self.receivers, *self.resumers)
        position = self.checked
        while position < len(self.acked) and self.acked[position][1] <= cutoff:
            offset = self.acked[position][0]
            position += 1
            for receiver in everyone:
                if not receiver.owes(offset):
                    continue
                owed += 1
                count = receiver.count(offset)
                if count == 1:
                    once += 1
                elif count == 0:
                    missing += 1
                else:
                    repeated += 1
        self.checked = position
        return {"owed": owed, "once": once, "missing": missing, "repeated": repeated}

    def mark(self, cutoff: float) -> dict[str, Any]:
        self._check_stable()
        reply: dict[str, Any] = dict(self.tally)
        reply.update(self.completeness(cutoff))
        reply["errors"] = dict(self.errors)
        reply["open"] = self.open_connections()
        self.tally = Counter()
        self.errors = Counter()
        return reply

    def open_connections(self) -> int:
        everyone = [r.connection for r in (*self.receivers, *self.resumers)]
        everyone += [*self.presence, *self.state, self.publisher, *self.churning]
        return sum(1 for c in everyone if c is not None and c.open)

    async def stop(self) -> dict[str, Any]:
        """Stop the traffic, wait for it to settle, check the rest, close."""
        self.stopping = True
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=STOP_WAIT_S + CALL_TIMEOUT_S)
        for task in self.tasks:
            task.cancel()
        deadline = time.monotonic() + STOP_WAIT_S
        while any(r.away for r in self.resumers) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(min(SETTLE_S, max(0.0, deadline - time.monotonic())))
        reply = self.mark(math.inf)
        reply["unchecked"] = len(self.acked) - self.checked
        for connection in self._all():
            self._expect_closed(connection)
            connection.abort()
        return reply

    def _all(self) -> list[ClientConnection]:
        everyone = [r.connection for r in (*self.receivers, *self.resumers)]
        everyone += [*self.presence, *self.state, self.publisher, *self.churning]
        return [c for c in everyone if c is not None]


# -- the commands -------------------------------------------------------------------


async def soak_setup(
    worker: _Worker, *, sizes: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """Open and prepare the stable connections of a soak of ``seconds``."""
    soak = Soak(worker, sizes, seconds)
    worker.state["soak"] = soak
    return await soak.setup()


async def soak_start(worker: _Worker, *, seconds: float) -> dict[str, Any]:
    """Start the traffic in the background for at most ``seconds``."""
    worker.state["soak"].start(seconds)
    return {}


async def soak_mark(worker: _Worker) -> dict[str, Any]:
    """What was counted since the previous mark, and the completeness of
    the publications that settled since."""
    return worker.state["soak"].mark(time.monotonic() - SETTLE_S)


async def soak_stop(worker: _Worker) -> dict[str, Any]:
    """Stop the traffic, check every publication left, close everything."""
    return await worker.state.pop("soak").stop()


HANDLERS = {
    "soak_setup": soak_setup,
    "soak_start": soak_start,
    "soak_mark": soak_mark,
    "soak_stop": soak_stop,
}
