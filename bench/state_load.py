"""The load side of the ``state`` scenario: players that move, clients that
count what they are sent, and a few that mirror it.

The movement model is fixed and seeded (:class:`Walker`): each player walks
from waypoint to waypoint, each drawn within :data:`WAYPOINT_RADIUS_M` of
where it stands (inside the scenario's area), at a speed drawn uniformly
from 1.0 to 1.8 m/s (5 % of the players run, at 5 m/s), pausing from 0 to
20 s at each; about 65 % of the players are moving at any time. Five slow
fields (integers, a random walk of steps of one) each change 0.5 times a
second. A moving player sends one ``state.update`` notification per 60th
of a second (its position, quantized to 1 cm, and any slow field that
changed); a standing one only when a slow field changed. The same seed
gives every player the same walk in every run.

Two kinds of clients receive (:func:`state_setup` picks them):

- *counting* clients, nearly all of them: a ``state.delta`` is never
  decoded, only measured (its size, and its ``ts``, found from the end of
  the message where the gateway puts it), so that receiving costs the load
  process as little as possible;
- *mirror* clients, a few per process, spread over the players: they decode
  every state message, keep a :class:`~rtgateway.state.mirror.Mirror`,
  verify every ``state.check`` against it (a copy of the view at the check,
  hashed a little later so that all mirrors do not hash on the same tick),
  and for every delta also weigh the full ``state.snapshot`` of their
  mirror in their own encoding, the message a server without deltas would
  have sent instead (:class:`SnapshotScale`: exact, and checked against a
  full encoding at every mark).

The movement runs in the background (:func:`state_move`) while the
scenario marks the start and the end of its window (:func:`state_mark`):
each mark returns what was counted since the previous one. Every loop is
bounded by a count and a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import random
import struct
import time
from array import array
from collections import deque
from typing import TYPE_CHECKING, Any

import cbor2
import orjson

from bench.procstat import process_cpu_seconds
from rtgateway.state.mirror import BrokenChain, Mirror

if TYPE_CHECKING:
    from bench.worker import Worker
    from bench.wsclient import ClientConnection

ZONE = "bench"
FAST_HZ = 60
SLOW_HZ = 10
SLOW_FIELDS = ("s1", "s2", "s3", "s4", "s5")
#: Each slow field changes this many times a second.
SLOW_CHANGE_HZ = 0.5
SLOW_MAX = 100
WAYPOINT_RADIUS_M = 40.0
WALK_SPEED = (1.0, 1.8)
RUN_SPEED = 5.0
RUNNER_SHARE = 0.05
PAUSE_S = (0.0, 20.0)
#: Players of one process are split in this many groups, each sending its
#: inputs at its own phase of the 60 Hz frame, as clients not in step do.
PHASES = 4
#: Requests in flight while joining.
JOIN_CONCURRENCY = 100
#: Tries at a waypoint inside the area before clamping one into it.
WAYPOINT_TRIES = 20


def zone_table(*, aoi_radius: float, check_interval_ticks: int = 60) -> dict:
    """The ``[zones.bench]`` table the gateway runs the scenario with."""
    fields: dict[str, dict[str, Any]] = {
        "x": {"type": "number", "quantum": 0.01},
        "y": {"type": "number", "quantum": 0.01},
    }
    for name in SLOW_FIELDS:
        fields[name] = {"type": "integer", "lane": "slow", "min": 0, "max": SLOW_MAX}
    return {
        "fast_hz": FAST_HZ,
        "slow_hz": SLOW_HZ,
        "check_interval_ticks": check_interval_ticks,
        "timestamps": True,
        "position": ["x", "y"],
        "aoi_radius": aoi_radius,
        "max_entities": 5000,
        "fields": fields,
    }


# -- the movement model ----------------------------------------------------------


class Area:
    """Where players stand: a square ``[0, size]^2`` or a disc."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.kind = spec["kind"]
        if self.kind == "square":
            self.size = float(spec["size"])
        elif self.kind == "disc":
            self.cx, self.cy, self.r = (float(spec[k]) for k in ("cx", "cy", "r"))
        else:
            raise ValueError(f"unknown area {spec!r}")

    def inside(self, x: float, y: float) -> bool:
        if self.kind == "square":
            return 0.0 <= x <= self.size and 0.0 <= y <= self.size
        return math.hypot(x - self.cx, y - self.cy) <= self.r

    def clamp(self, x: float, y: float) -> tuple[float, float]:
        if self.kind == "square":
            return min(max(x, 0.0), self.size), min(max(y, 0.0), self.size)
        dx, dy = x - self.cx, y - self.cy
        d = math.hypot(dx, dy)
        if d <= self.r:
            return x, y
        return self.cx + dx / d * self.r, self.cy + dy / d * self.r

    def random_point(self, rng: random.Random) -> tuple[float, float]:
        if self.kind == "square":
            return rng.uniform(0, self.size), rng.uniform(0, self.size)
        angle = rng.uniform(0, 2 * math.pi)
        d = self.r * math.sqrt(rng.random())
        return self.cx + d * math.cos(angle), self.cy + d * math.sin(angle)


class Walker:
    """One player's movement and slow fields, stepped 60 times a second."""

    __slots__ = (
        "area",
        "next_slow",
        "pause",
        "pauses",
        "rng",
        "slow",
        "speed",
        "step_m",
        "tx",
        "ty",
        "x",
        "y",
    )

    def __init__(self, seed: int, area: Area, *, pauses: bool = True) -> None:
        rng = self.rng = random.Random(seed)
        self.area = area
        self.pauses = pauses
        self.x, self.y = area.random_point(rng)
        runner = rng.random() < RUNNER_SHARE
        self.speed = RUN_SPEED if runner else rng.uniform(*WALK_SPEED)
        self.step_m = self.speed / FAST_HZ
        self.slow = [rng.randint(0, 20) for _ in SLOW_FIELDS]
        self.tx, self.ty = self.x, self.y
        self._target()
        # Start as the steady state would be: a third or so standing, part
        # way through a pause (the mean walk is ~19 s, the mean pause 10 s).
        self.pause = 0.0
        if pauses and rng.random() < 0.35:
            self.pause = rng.uniform(*PAUSE_S)
        self.next_slow = self._slow_gap()

    def _slow_gap(self) -> float:
        return self.rng.expovariate(SLOW_CHANGE_HZ * len(SLOW_FIELDS))

    def _target(self) -> None:
        rng, area = self.rng, self.area
        for _ in range(WAYPOINT_TRIES):
            angle = rng.uniform(0, 2 * math.pi)
            d = WAYPOINT_RADIUS_M * math.sqrt(rng.random())
            tx, ty = self.x + d * math.cos(angle), self.y + d * math.sin(angle)
            if area.inside(tx, ty):
                break
        else:
            tx, ty = area.clamp(tx, ty)
        self.tx, self.ty = tx, ty

    def initial_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"x": round(self.x, 2), "y": round(self.y, 2)}
        fields.update(zip(SLOW_FIELDS, self.slow, strict=True))
        return fields

    def step(self) -> dict[str, Any] | None:
        """One 60th of a second; the fields to send (None: nothing changed)."""
        fields: dict[str, Any] | None = None
        dt = 1.0 / FAST_HZ
        self.next_slow -= dt
        if self.next_slow <= 0:
            self.next_slow = self._slow_gap()
            index = self.rng.randrange(len(SLOW_FIELDS))
            value = self.slow[index] + self.rng.choice((-1, 1))
            value = min(max(value, 0), SLOW_MAX)
            self.slow[index] = value
            fields = {SLOW_FIELDS[index]: value}
        if self.pause > 0:
            self.pause -= dt
            if self.pause <= 0:
                self._target()
            return fields
        dx, dy = self.tx - self.x, self.ty - self.y
        d = math.hypot(dx, dy)
        if d <= self.step_m:
            self.x, self.y = self.tx, self.ty
            if self.pauses:
                self.pause = self.rng.uniform(*PAUSE_S)
            self._target()
        else:
            self.x += dx / d * self.step_m
            self.y += dy / d * self.step_m
        if fields is None:
            fields = {}
        fields["x"] = round(self.x, 2)
        fields["y"] = round(self.y, 2)
        return fields

    @property
    def moving(self) -> bool:
        return self.pause <= 0


def player_seed(seed: int, player: int) -> int:
    return seed * 1_000_003 + player


# -- what the clients count ---------------------------------------------------------


class Tally:
    """What one load process counted since the last mark."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.cpu_started = process_cpu_seconds()
        self.deltas = 0
        #: Delta bytes as the protocol sends them: the benchmark's ``ts``
        #: member (not in the protocol) left out.
        self.delta_bytes = 0
        self.other_messages = 0
        self.latencies = array("d")
        # The mirror clients.
        self.sample_deltas = 0
        self.sample_delta_bytes = 0
        self.sample_snapshot_bytes = 0
        self.checks = 0
        self.mismatches = 0
        self.broken = 0
        # The inputs.
        self.rounds = 0
        self.inputs = 0
        self.lags = array("d")
        self.player_steps = 0
        self.moving_steps = 0

    def figures(self) -> dict[str, Any]:
        return {
            "elapsed": time.monotonic() - self.started,
            "window_cpu_s": process_cpu_seconds() - self.cpu_started,
            "deltas": self.deltas,
            "delta_bytes": self.delta_bytes,
            "other_messages": self.other_messages,
            "latencies": self.latencies,
            "sample_deltas": self.sample_deltas,
            "sample_delta_bytes": self.sample_delta_bytes,
            "sample_snapshot_bytes": self.sample_snapshot_bytes,
            "checks": self.checks,
            "mismatches": self.mismatches,
            "broken": self.broken,
            "rounds": self.rounds,
            "inputs": self.inputs,
            "lags": self.lags,
            "player_steps": self.player_steps,
            "moving_steps": self.moving_steps,
        }


_TS_JSON = b',"ts":'
_TS_CBOR = b"\x62ts"
_DOUBLE = struct.Struct(">d")


def _json_ts(payload: bytes) -> tuple[int, float | None]:
    """(protocol bytes, ts) of a JSON state message: ``ts`` is its last
    member (``...,"ts":123.4}}``)."""
    at = payload.rfind(_TS_JSON)
    if at < 0:
        return len(payload), None
    return at + 2, float(payload[at + 6 : -2])


def _cbor_ts(payload: bytes) -> tuple[int, float | None]:
    """(protocol bytes, ts) of a CBOR state message: ``ts`` is its last
    member, a float; leaving it out leaves the params map's head as long."""
    at = payload.rfind(_TS_CBOR)
    if at < 0:
        return len(payload), None
    head = payload[at + 3]
    if head == 0xFB:
        return at, _DOUBLE.unpack_from(payload, at + 4)[0]
    return at, float(cbor2.loads(payload[at + 3 :]))


def snapshot_document(mirror: Mirror) -> dict[str, Any]:
    """The ``state.snapshot`` a server would send for the mirror's view."""
    return {
        "jsonrpc": "2.0",
        "method": "state.snapshot",
        "params": {
            "zone": mirror.zone,
            "tick": mirror.tick,
            "entities": {
                entity_id: {"v": version, "fields": fields}
                for entity_id, (version, fields) in mirror.entities.items()
            },
        },
    }


class SnapshotScale:
    """What the full ``state.snapshot`` of a mirror's view weighs, in one
    encoding, kept up to date per delta.

    Both encodings write a map as its members one after the other (JSON
    with commas between, CBOR after a head holding the count), so the
    snapshot's size is the size of the document with no entities, plus
    each entity's encoded member, plus the separators: only the members of
    the entities a delta changed are encoded again. :meth:`exact` encodes
    the whole document, to check the sum.
    """

    def __init__(self, mirror: Mirror, binary: bool) -> None:
        self.mirror = mirror
        self.binary = binary
        self._encode = cbor2.dumps if binary else orjson.dumps
        self._sizes: dict[str, int] = {}
        self._total = 0

    def _member(self, entity_id: str) -> int:
        version, fields = self.mirror.entities[entity_id]
        encode = self._encode
        body = len(encode({"v": version, "fields": fields}))
        return len(encode(entity_id)) + body + (0 if self.binary else 1)

    def reset(self) -> None:
        """The mirror was replaced (a snapshot): weigh every member."""
        self._sizes = {e: self._member(e) for e in self.mirror.entities}
        self._total = sum(self._sizes.values())

    def changed(self, params: dict[str, Any]) -> None:
        """The mirror applied this delta."""
        sizes = self._sizes
        total = self._total
        for entity_id in params["changed"]:
            size = self._member(entity_id)
            total += size - sizes.get(entity_id, 0)
            sizes[entity_id] = size
        for entity_id in params["removed"]:
            total -= sizes.pop(entity_id, 0)
        self._total = total

    def size(self) -> int:
        """Bytes of the snapshot of the mirror's view as it stands."""
        mirror = self.mirror
        count = len(mirror.entities)
        empty = {
            "jsonrpc": "2.0",
            "method": "state.snapshot",
            "params": {"zone": mirror.zone, "tick": mirror.tick, "entities": {}},
        }
        head = len(self._encode(empty))
        if self.binary:  # the empty map's one-byte head becomes the count's
            return head - 1 + len(_cbor_map_head(count)) + self._total
        return head + self._total + max(count - 1, 0)

    def exact(self) -> int:
        return len(self._encode(snapshot_document(self.mirror)))


def _cbor_map_head(count: int) -> bytes:
    if count < 24:
        return bytes((0xA0 | count,))
    if count < 0x100:
        return bytes((0xB8, count))
    if count < 0x10000:
        return b"\xb9" + struct.pack(">H", count)
    return b"\xba" + struct.pack(">I", count)


def counting_hook(state: dict[str, Any], binary: bool, seen: list[int], index: int):
    """The ``on_payload`` of a counting client: deltas are measured, not
    decoded; anything else goes on to the connection's usual handling.
    Counts go to ``state["tally"]``, which a mark replaces."""
    measure = _cbor_ts if binary else _json_ts
    timer = time.time

    def on_payload(payload: bytes) -> bool:
        head = payload[:64]
        tally = state["tally"]
        if b"state.delta" in head:
            now = timer() * 1000.0
            size, ts = measure(payload)
            tally.deltas += 1
            tally.delta_bytes += size
            if ts is not None:
                tally.latencies.append(now - ts)
            return True
        if b"state.snapshot" in head:
            seen[index] += 1
            tally.other_messages += 1
            return True
        if b"state.check" in head:
            tally.other_messages += 1
            return True
        return False

    return on_payload


def mirror_hook(
    state: dict[str, Any],
    connection: ClientConnection,
    mirror: Mirror,
    binary: bool,
    seen: list[int],
    index: int,
):
    """The ``on_payload`` of a mirror client: every state message decoded
    and applied, every check verified, every delta weighed against the
    snapshot of the same view."""
    measure = _cbor_ts if binary else _json_ts
    decode = cbor2.loads if binary else orjson.loads
    scale = SnapshotScale(mirror, binary)
    state["scales"].append(scale)
    timer = time.time

    def on_payload(payload: bytes) -> bool:
        now = timer() * 1000.0
        document = decode(payload)
        if type(document) is not dict or "method" not in document:
            return False  # an answer to a call
        tally = state["tally"]
        method, params = document["method"], document["params"]
        if method == "state.delta":
            size, ts = measure(payload)
            tally.deltas += 1
            tally.delta_bytes += size
            if ts is not None:
                tally.latencies.append(now - ts)
            if mirror.tick is None:  # a state.sync is on its way
                return True
            try:
                mirror.apply(method, params)
            except BrokenChain:
                tally.broken += 1
                mirror.tick = None
                connection.call("state.sync", {})
                return True
            scale.changed(params)
            tally.sample_deltas += 1
            tally.sample_delta_bytes += size
            tally.sample_snapshot_bytes += scale.size()
        elif method == "state.check":
            tally.other_messages += 1
            if mirror.tick is not None:  # not while a sync is on its way
                # Hashing a view takes milliseconds and every client gets its
                # check on the same tick: the view is kept (entries are
                # replaced, never changed, so a shallow copy holds) and
                # verified a little later, one at a time (:func:`_verify`).
                view = Mirror(own=mirror.own)
                view.entities = dict(mirror.entities)
                state["checks"].append((tally, view, params))
        else:
            tally.other_messages += 1
            if method == "state.snapshot":
                seen[index] += 1
                mirror.apply(method, params)
                scale.reset()
        return True

    return on_payload


# -- the commands -------------------------------------------------------------------


def _spread(count: int, among: int) -> list[int]:
    """``count`` indices spread evenly over ``range(among)``."""
    count = min(count, among)
    return sorted({(i * among) // count for i in range(count)}) if count else []


async def state_setup(
    worker: Worker,
    *,
    seed: int,
    area: dict[str, Any],
    pauses: bool = True,
    mirrors: int = 5,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Every connection joins the zone where its walker starts, each with
    its hook installed first; returns once every joined client has its
    snapshot (or at ``timeout``)."""
    connections = worker.connections
    plan = worker.plan
    binary = plan.encoding == "cbor"
    region = Area(area)
    walkers = [
        Walker(player_seed(seed, plan.first_player + i), region, pauses=pauses)
        for i in range(len(connections))
    ]
    seen = [0] * len(connections)
    sample = _spread(mirrors, len(connections))
    mirrors_held: dict[int, Mirror] = {}
    state: dict[str, Any] = {"walkers": walkers, "tally": Tally(), "binary": binary}
    state["checks"] = deque()
    state["scales"] = []
    state["mirrors"] = mirrors_held
    worker.state["state"] = state
    for index, connection in enumerate(connections):
        if index in sample:
            mirror = Mirror(own=f"player.p{plan.first_player + index}")
            mirrors_held[index] = mirror
            connection.on_payload = mirror_hook(
                state, connection, mirror, binary, seen, index
            )
        else:
            connection.on_payload = counting_hook(state, binary, seen, index)
    gate = asyncio.Semaphore(JOIN_CONCURRENCY)
    errors: list[Any] = []
    deadline = time.monotonic() + timeout

    async def join(index: int) -> None:
        async with gate:
            params = {"zone": ZONE, "fields": walkers[index].initial_fields()}
            try:
                reply = await asyncio.wait_for(
                    connections[index].call("state.join", params),
                    max(0.1, deadline - time.monotonic()),
                )
            except (ConnectionError, TimeoutError) as error:
                errors.append(f"{type(error).__name__}: {error}")
                return
            if "result" not in reply:
                errors.append(reply.get("error"))

    started = time.monotonic()
    await asyncio.gather(*(join(i) for i in range(len(connections))))
    joined = len(connections) - len(errors)
    while sum(1 for s in seen if s) < joined and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return {
        "joined": joined,
        "failed": len(errors),
        "error_samples": errors[:3],
        "snapshots": sum(1 for s in seen if s),
        "mirrors": len(mirrors_held),
        "seconds": time.monotonic() - started,
    }


def _verify(state: dict[str, Any], most: int | None = 1) -> None:
    """Verify up to ``most`` (None: all) of the checks kept by the mirrors."""
    checks = state["checks"]
    done = 0
    while checks and (most is None or done < most):
        tally, view, params = checks.popleft()
        tally.checks += 1
        tally.mismatches += not view.apply("state.check", params)
        done += 1


def _update(binary: bool, fields: dict[str, Any], seq: int) -> bytes:
    document = {
        "jsonrpc": "2.0",
        "method": "state.update",
        "params": {"fields": fields, "input_seq": seq},
    }
    return cbor2.dumps(document) if binary else orjson.dumps(document)


async def _move(worker: Worker, seconds: float) -> None:
    """Step every walker 60 times a second for ``seconds``, in
    :data:`PHASES` groups a quarter frame apart; each round is sent when it
    is due, or at once when late (its lateness is counted)."""
    state = worker.state["state"]
    walkers: list[Walker] = state["walkers"]
    binary = state["binary"]
    connections = worker.connections
    groups = [
        [(i, walkers[i], connections[i]) for i in range(g, len(walkers), PHASES)]
        for g in range(PHASES)
    ]
    seqs = [0] * len(walkers)
    loop = asyncio.get_running_loop()
    began = loop.time() + 0.01
    frames = int(seconds * FAST_HZ)
    deadline = time.monotonic() + seconds + 30.0
    for frame in range(frames):
        for phase, group in enumerate(groups):
            due = began + (frame + phase / PHASES) / FAST_HZ
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.monotonic() > deadline or state.get("stop"):
                return
            tally: Tally = state["tally"]  # a mark replaces it
            tally.lags.append((loop.time() - due) * 1000.0)
            tally.rounds += 1
            sent = moving = 0
            for index, walker, connection in group:
                fields = walker.step()
                if walker.moving:
                    moving += 1
                if fields is None:
                    continue
                seqs[index] += 1
                connection.send_encoded(_update(binary, fields, seqs[index]))
                sent += 1
            tally.inputs += sent
            tally.player_steps += len(group)
            tally.moving_steps += moving
            if phase == PHASES - 1:
                _verify(state)


async def state_move(worker: Worker, *, seconds: float) -> dict[str, Any]:
    """Start the movement in the background for at most ``seconds``."""
    state = worker.state["state"]
    state["stop"] = False
    # A full collection of this process's heap (every connection, mirror
    # and walker) stalls the loop for tens of milliseconds: the objects
    # made so far are frozen and collection is off while moving (bounded
    # by ``seconds``; state_stop turns it back on). Messages make no cycles.
    gc.collect()
    gc.freeze()
    gc.disable()
    state["task"] = asyncio.get_running_loop().create_task(_move(worker, seconds))
    return {"started": True}


async def state_mark(worker: Worker) -> dict[str, Any]:
    """What was counted since the previous mark (or the setup); counting
    starts over."""
    state = worker.state["state"]
    _verify(state, None)
    tally: Tally = state["tally"]
    state["tally"] = Tally()
    figures = tally.figures()
    figures["scale_errors"] = sum(
        scale.size() != scale.exact()
        for scale in state["scales"]
        if scale.mirror.tick is not None
    )
    task = state.get("task")
    if task is not None and task.done() and task.exception() is not None:
        raise RuntimeError(f"the movement failed: {task.exception()!r}")
    figures["moving"] = bool(task is not None and not task.done())
    return figures


async def state_stop(worker: Worker, *, timeout: float = 10.0) -> dict[str, Any]:
    """Stop the movement; the mirrors' last views."""
    state = worker.state["state"]
    state["stop"] = True
    task = state.get("task")
    if task is not None:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout)
    for connection in worker.connections:
        connection.on_payload = None
    gc.enable()
    gc.unfreeze()
    return {"entities_in_views": [len(m.entities) for m in state["mirrors"].values()]}


HANDLERS = {
    "state_setup": state_setup,
    "state_move": state_move,
    "state_mark": state_mark,
    "state_stop": state_stop,
}
