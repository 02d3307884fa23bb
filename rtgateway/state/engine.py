"""The tick step of one zone: sans-io, driven by the state component.

:class:`ZoneEngine` holds a zone's entities (this gateway's replica of
them) and the clients of this gateway in the zone. Inputs, world writes
and remote changes come in as method calls with the time as an argument;
each :meth:`ZoneEngine.tick` returns the encoded messages to send, the
clients to close and this gateway's player writes for the state store.
Nothing here schedules, sends or touches a socket.

Per tick, each changed entity's fragment is encoded once per codec and
base, and shared: a client that is caught up (it was sent every change of
its view so far) gets the fragments of this tick's changes, gathered from
the entities' watcher sets without looking at the rest of its view. A
client that was skipped (its connection was not writable, or it is on a
lower rate) is *stale*: when it is next sent, it gets one delta from its own
``base_tick``, computed from the per-field publish ticks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rtgateway.state.encoding import (
    CBOR,
    CODEC_INDEX,
    JSON,
    check_message,
    delta_message,
    snapshot_message,
)
from rtgateway.state.entity import Entity
from rtgateway.state.interest import Grid
from rtgateway.state.rules import MoveAllowance, check_fields
from rtgateway.state.schema import ZoneSchema
from rtgateway.state.viewhash import ordered_hash, utf16_order, view_hash
from rtgateway.wire.errors import InvalidParams, NotFound, Unavailable

#: How often the interest grid forgets stamps nobody can need (ticks).
PRUNE_EVERY_TICKS = 600


class ZoneFullError(Unavailable):
    """The zone holds ``max_entities`` entities already."""


@dataclass(frozen=True, slots=True)
class Backpressure:
    """When a client that cannot keep up is slowed down, and when closed."""

    #: Ticks behind before the client is moved to the slow rate.
    slow_after_ticks: int
    #: Ticks behind before it is closed 4008.
    close_after_ticks: int
    #: Ticks sent in time at the slow rate before the fast rate comes back.
    recover_after_ticks: int

    @classmethod
    def for_zone(cls, schema: ZoneSchema) -> Backpressure:
        hz = schema.fast_hz
        return cls(
            slow_after_ticks=max(2, round(schema.lag_slow_s * hz)),
            close_after_ticks=max(3, round(schema.lag_close_s * hz)),
            recover_after_ticks=hz * 2,
        )


@dataclass(slots=True)
class UpdateOutcome:
    """What a ``state.update`` request answers."""

    version: int
    input_seq: int | None
    corrected: dict[str, Any]


@dataclass(slots=True)
class TickResult:
    """What one tick produced, for the component to carry out."""

    tick: int
    #: ``(client_id, payload)`` in sending order (a check follows its delta).
    sends: list[tuple[Any, bytes]] = field(default_factory=list)
    #: Clients that stayed behind too long: close them 4008.
    closes: list[Any] = field(default_factory=list)
    #: This gateway's player writes: ``{entity_id: (version, changed_fields)}``.
    changed: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    #: Seconds spent per phase, when the engine was given a timer.
    phases: dict[str, float] = field(default_factory=dict)
    #: Entities published this tick.
    published: int = 0


class ClientView:
    """One client of the zone, as the tick step sees it."""

    __slots__ = (
        "ack",
        "ack_corrected",
        "base",
        "behind_since",
        "clean",
        "client_id",
        "codec",
        "entering",
        "entity_id",
        "held",
        "leaving",
        "on_time",
        "out",
        "rate",
        "reenter",
        "refreshed",
        "slot",
        "stale",
        "view",
    )

    def __init__(self, client_id: Any, entity_id: str, codec: int, slot: int) -> None:
        self.client_id = client_id
        self.entity_id = entity_id
        self.codec = codec
        #: The tick of the last state message sent.
        self.base = 0
        #: ``{entity_id: incarnation}`` of what the client's mirror holds.
        self.held: dict[str, int] = {}
        #: The entities (other than its own) the client should hold.
        self.view: set[str] = set()
        self.entering: set[str] = set()
        self.leaving: set[str] = set()
        #: Re-created entities to enter once their removal has been sent.
        self.reenter: set[str] = set()
        #: This tick's fragments, for a client that is caught up.
        self.out: list[bytes] = []
        self.stale = False
        #: Set each tick: neither stale nor with entities entering or leaving.
        self.clean = True
        self.ack: dict[str, Any] | None = None
        self.ack_corrected: dict[str, Any] = {}
        self.rate = 1
        self.behind_since: int | None = None
        self.on_time = 0
        self.slot = slot
        self.refreshed = -1


class ZoneEngine:
    """The entities and local clients of one zone, and the tick step."""

    def __init__(
        self,
        schema: ZoneSchema,
        *,
        timer: Callable[[], float] | None = None,
        backpressure: Backpressure | None = None,
    ) -> None:
        self.schema = schema
        self.zone = schema.name
        self.tick_count = 0
        self.entities: dict[str, Entity] = {}
        self.clients: dict[Any, ClientView] = {}
        #: The client holding each player entity: at most one.
        self._holders: dict[str, Any] = {}
        self._dirty: set[Entity] = set()
        self._slow = frozenset(n for n, s in schema.fields.items() if s.lane == "slow")
        self._position = schema.position
        self._aoi = schema.aoi_radius > 0 and len(schema.position) >= 2
        # Used only with AOI (``_aoi``); without, it stays empty.
        radius = schema.aoi_radius if self._aoi else 1.0
        self._grid = Grid(radius, radius + schema.leave_margin)
        self._unplaced: dict[str, Entity] = {}
        self._refresh_every = max(1, schema.slow_every)
        self._incarnations = 0
        self._slots = 0
        self._local: set[str] = set()
        self._store_changed: dict[str, dict[str, Any]] = {}
        self._store_removed: set[str] = set()
        self._timer = timer
        self._backpressure = backpressure or Backpressure.for_zone(schema)
        snapshot_ticks = round(schema.snapshot_interval_s * schema.fast_hz)
        self._snapshot_every = (
            max(1, snapshot_ticks) if schema.snapshot_interval_s > 0 else 0
        )
        self.stamp_time: Callable[[], float] | None = None

    # -- entities ------------------------------------------------------------

    def defaults(self) -> dict[str, Any]:
        """The fields a new entity starts with."""
        return {
            name: spec.default
            for name, spec in self.schema.fields.items()
            if spec.default is not None
        }

    def _create(self, entity_id: str, version: int, fields: dict[str, Any]) -> Entity:
        self._incarnations += 1
        entity = Entity(
            entity_id,
            version,
            fields,
            self._incarnations,
            self.tick_count,
            self._position,
        )
        self.entities[entity_id] = entity
        # Changes between ticks count from the next tick, which shows them.
        if self._aoi and entity.pos is not None:
            self._grid.place(entity, self.tick_count + 1)
        else:
            if self._aoi:
                self._unplaced[entity_id] = entity
            for client in self.clients.values():
                if client.entity_id != entity_id:
                    self._enter(client, entity)
        return entity

    def remove(self, entity_id: str) -> bool:
        """Take an entity out of the zone; True if it was there."""
        entity = self.entities.pop(entity_id, None)
        if entity is None:
            return False
        self._dirty.discard(entity)
        self._unplaced.pop(entity_id, None)
        if self._aoi:
            self._grid.remove(entity, self.tick_count + 1)
        for client in list(entity.watchers):
            self._leave(client, entity_id)
        if entity_id in self._local:
            self._local.discard(entity_id)
            self._store_changed.pop(entity_id, None)
            self._store_removed.add(entity_id)
        return True

    def apply(self, entity_id: str, version: int, fields: dict[str, Any]) -> None:
        """A change made elsewhere (the store, another gateway): newer versions win."""
        entity = self.entities.get(entity_id)
        if entity is None:
            self._create(entity_id, version, fields)
        elif version > entity.version:
            entity.change(fields, version)
            self._dirty.add(entity)

    def replace(self, entity_id: str, version: int, fields: dict[str, Any]) -> None:
        """Set an entity to exactly what the store holds (a replica rebuilt)."""
        entity = self.entities.get(entity_id)
        if entity is None:
            self._create(entity_id, version, fields)
            return
        if entity.version == version and entity.fields == fields:
            return
        if set(entity.fields) - set(fields):
            self.remove(entity_id)
            self._create(entity_id, version, fields)
            return
        entity.change(fields, version)
        self._dirty.add(entity)

    def take_writes(self) -> tuple[dict[str, tuple[int, dict[str, Any]]], list[str]]:
        """This gateway's player changes since the last call, for the store."""
        entities = self.entities
        changed = {
            entity_id: (entities[entity_id].version, fields)
            for entity_id, fields in self._store_changed.items()
            if entity_id in entities
        }
        removed = sorted(self._store_removed)
        self._store_changed = {}
        self._store_removed = set()
        return changed, removed

    def rewrite(
        self, changed: dict[str, tuple[int, dict[str, Any]]], removed: list[str]
    ) -> None:
        """Writes the store refused: send them again with the next batch."""
        for entity_id, (_, fields) in changed.items():
            if entity_id in self._local and entity_id in self.entities:
                pending = self._store_changed.setdefault(entity_id, {})
                self._store_changed[entity_id] = {**fields, **pending}
        for entity_id in removed:
            if entity_id not in self.entities:
                self._store_removed.add(entity_id)

    def rewrite_all(self, entity_ids: set[str]) -> None:
        """Write these local entities whole again (the store may have lost them)."""
        for entity_id in entity_ids:
            entity = self.entities.get(entity_id)
            if entity is not None and entity_id in self._local:
                self._store_changed[entity_id] = dict(entity.fields)

    # -- clients -------------------------------------------------------------

    def join(
        self,
        client_id: Any,
        entity_id: str,
        codec: str,
        fields: dict[str, Any],
        now: float,
    ) -> bytes:
        """Add a client and its player entity; the snapshot to send it.

        An entity already in the zone (the same player joining again) keeps
        its version and takes ``fields`` as a change.
        """
        checked = check_fields(self.schema, fields, "/fields")
        if checked.errors:
            raise InvalidParams(checked.errors)
        entity = self.entities.get(entity_id)
        if entity is None:
            if len(self.entities) >= self.schema.max_entities:
                raise ZoneFullError(f"zone {self.zone} is full")
            values = self.defaults()
            values.update(checked.values)
            entity = self._create(entity_id, 1, values)
            self._store_changed[entity_id] = dict(values)
        else:
            if self.schema.max_speed is not None and entity.allowance is not None:
                entity.allowance.limit(self.schema, entity.fields, checked, now)
            if entity.change(checked.values):
                self._dirty.add(entity)
                self._store_changed.setdefault(entity_id, {}).update(checked.values)
        self._local.add(entity_id)
        self._store_removed.discard(entity_id)
        return self.attach(client_id, entity_id, codec, now)

    def attach(self, client_id: Any, entity_id: str, codec: str, now: float) -> bytes:
        """A client takes (back) its entity, already in the zone; its snapshot."""
        entity = self.entities.get(entity_id)
        if entity is None:
            raise NotFound(f"{entity_id} is not in zone {self.zone}")
        if client_id in self.clients:
            self.detach(client_id)
        holder = self._holders.get(entity_id)
        if holder is not None:
            # One client per entity: a second would lose it when the first left.
            self.detach(holder)
        if entity.allowance is None:
            entity.allowance = MoveAllowance(self.schema, now)
        self._local.add(entity_id)
        self._slots += 1
        client = ClientView(
            client_id, entity_id, CODEC_INDEX[codec], self._slots % self._refresh_every
        )
        self.clients[client_id] = client
        self._holders[entity_id] = client_id
        if not self._aoi:
            for other in self.entities.values():
                if other.entity_id != entity_id:
                    self._enter(client, other)
        return self.snapshot(client_id)

    def detach(self, client_id: Any) -> str | None:
        """The client is gone; its entity stays. Returns the entity id."""
        client = self.clients.pop(client_id, None)
        if client is None:
            return None
        if self._holders.get(client.entity_id) == client_id:
            del self._holders[client.entity_id]
        for entity_id in client.view:
            entity = self.entities.get(entity_id)
            if entity is not None:
                entity.watchers.discard(client)
        return client.entity_id

    def leave(self, client_id: Any) -> None:
        """The client leaves the zone with its entity."""
        entity_id = self.detach(client_id)
        if entity_id is not None:
            self.remove(entity_id)

    def release(self, entity_id: str) -> None:
        """Another gateway writes this player now: stop writing it from here."""
        self._local.discard(entity_id)
        self._store_changed.pop(entity_id, None)

    def update(
        self, client_id: Any, fields: dict[str, Any], input_seq: int | None, now: float
    ) -> UpdateOutcome:
        """Apply one input of a client; the ack goes out with the next tick."""
        client = self.clients[client_id]
        entity = self.entities[client.entity_id]
        last = entity.last_input_seq
        if input_seq is not None and last is not None and input_seq <= last:
            raise InvalidParams(
                [{"path": "/input_seq", "message": f"stale: input {last} is applied"}]
            )
        checked = check_fields(self.schema, fields, "/fields")
        if checked.errors:
            raise InvalidParams(checked.errors)
        if self.schema.max_speed is not None:
            entity.allowance.limit(self.schema, entity.fields, checked, now)
        if entity.change(checked.values):
            self._dirty.add(entity)
            self._store_changed.setdefault(entity.entity_id, {}).update(checked.values)
        if input_seq is not None:
            entity.last_input_seq = input_seq
        # A later input that set a field again undoes the earlier correction.
        pending = client.ack_corrected
        for name in checked.values.keys() - checked.corrected.keys():
            pending.pop(name, None)
        pending.update(checked.corrected)
        ack: dict[str, Any] = {"input_seq": entity.last_input_seq, "v": entity.version}
        if client.ack_corrected:
            ack["corrected"] = dict(client.ack_corrected)
        client.ack = ack
        return UpdateOutcome(entity.version, entity.last_input_seq, checked.corrected)

    # -- views ---------------------------------------------------------------

    def _enter(self, client: ClientView, entity: Entity) -> None:
        entity_id = entity.entity_id
        if entity_id in client.view:
            return
        client.view.add(entity_id)
        entity.watchers.add(client)
        if entity_id in client.leaving:
            if client.held[entity_id] == entity.incarnation:
                client.leaving.discard(entity_id)
            else:
                client.reenter.add(entity_id)
        elif entity_id not in client.held:
            client.entering.add(entity_id)

    def _leave(self, client: ClientView, entity_id: str) -> None:
        client.view.discard(entity_id)
        entity = self.entities.get(entity_id)
        if entity is not None:
            entity.watchers.discard(client)
        client.entering.discard(entity_id)
        client.reenter.discard(entity_id)
        if entity_id in client.held:
            client.leaving.add(entity_id)

    def _refresh(self, client: ClientView) -> None:
        """Recompute an AOI view: enter within the radius, leave past the margin."""
        own = self.entities[client.entity_id]
        center = own.pos
        client.refreshed = self.tick_count
        if center is None:
            wanted = set(self.entities)
            wanted.discard(own.entity_id)
        else:
            radius = self.schema.aoi_radius
            keep = radius + self.schema.leave_margin
            dist = math.dist
            entities = self.entities
            wanted = set()
            for entity_id in client.view:
                entity = entities[entity_id]
                if entity.pos is None or dist(center, entity.pos) <= keep:
                    wanted.add(entity_id)
            for entity in self._grid.block(self._grid.cell_of(center)):
                if entity is not own and dist(center, entity.pos) <= radius:
                    wanted.add(entity.entity_id)
            wanted.update(self._unplaced)
        view = client.view
        for entity_id in view - wanted:
            self._leave(client, entity_id)
        for entity_id in wanted - view:
            self._enter(client, self.entities[entity_id])

    def _needs_refresh(self, client: ClientView) -> bool:
        own = self.entities[client.entity_id]
        cell = own.cell
        if cell is None:  # no position: its view is the whole zone
            return True
        since = client.refreshed
        if own.pos_tick > since or self._grid.changed_since(cell, since):
            return True
        # Nothing changed around it: its view is as good as a fresh one.
        client.refreshed = self.tick_count
        return False

    # -- messages ------------------------------------------------------------

    def snapshot(self, client_id: Any) -> bytes:
        """A full ``state.snapshot`` for a client; its mirror starts over."""
        client = self.clients[client_id]
        if self._aoi:
            self._refresh(client)
        entities = self.entities
        codec = client.codec
        own = entities[client.entity_id]
        members = [own.fragment(None, codec)]
        held = {own.entity_id: own.incarnation}
        for entity_id in client.view:
            entity = entities[entity_id]
            members.append(entity.fragment(None, codec))
            held[entity_id] = entity.incarnation
        client.held = held
        client.entering.clear()
        client.leaving.clear()
        client.reenter.clear()
        client.out = []
        client.stale = False
        client.base = self.tick_count
        return snapshot_message(
            codec, self.zone, self.tick_count, members, self._stamp()
        )

    def view_hash(self, client_id: Any) -> tuple[int, str]:
        """``(tick, hash)`` of what the client holds, its own entity excluded.

        Only meaningful for a client that is not stale: see :meth:`catch_up`.
        """
        client = self.clients[client_id]
        entities = self.entities
        members = [
            (entity_id, entities[entity_id].canonical())
            for entity_id in client.held
            if entity_id != client.entity_id
        ]
        return client.base, view_hash(members)

    def _whole_zone_members(self) -> tuple[dict[str, int], list[bytes]] | None:
        """Without AOI, every entity's canonical member in hash order, once
        per check tick: a caught-up client's view is all of them but its own."""
        if self._aoi:
            return None
        ordered = sorted(self.entities, key=utf16_order)
        members = [self.entities[entity_id].canonical() for entity_id in ordered]
        return {entity_id: i for i, entity_id in enumerate(ordered)}, members

    def _check_hash(
        self, client: ClientView, whole: tuple[dict[str, int], list[bytes]] | None
    ) -> tuple[int, str]:
        if whole is not None and len(client.held) == len(self.entities):
            index, members = whole
            own = index.get(client.entity_id)
            if own is not None:
                return client.base, ordered_hash(members[:own] + members[own + 1 :])
        return self.view_hash(client.client_id)

    def catch_up(self, client_id: Any) -> bytes | None:
        """The delta that brings a stale client up to date now, if it is stale."""
        client = self.clients[client_id]
        if not (client.stale or client.entering or client.leaving):
            return None
        client.stale = True
        return self._delta(client, self.tick_count)

    def _delta(self, client: ClientView, tick: int) -> bytes:
        codec = client.codec
        entities = self.entities
        if client.stale:
            base = client.base
            own = client.entity_id
            leaving = client.leaving
            changed = []
            for entity_id in client.held:
                if entity_id == own or entity_id in leaving:
                    continue
                entity = entities[entity_id]
                if entity.last_ptick > base:
                    changed.append(entity.fragment(base, codec))
        else:
            changed = client.out
        held = client.held
        if client.entering:
            changed = list(changed)
        for entity_id in client.entering:
            entity = entities[entity_id]
            changed.append(entity.fragment(None, codec))
            held[entity_id] = entity.incarnation
        removed = sorted(client.leaving)
        for entity_id in removed:
            del held[entity_id]
        client.entering = client.reenter
        client.reenter = set()
        client.leaving = set()
        client.out = []
        ack = client.ack
        client.ack = None
        client.ack_corrected = {}
        message = delta_message(
            codec, self.zone, tick, client.base, changed, removed, ack, self._stamp()
        )
        client.base = tick
        client.stale = False
        return message

    def _stamp(self) -> float | None:
        stamp = self.stamp_time
        return round(stamp() * 1000, 3) if stamp is not None else None

    # -- the tick ------------------------------------------------------------

    def tick(self, writable: Callable[[Any], bool]) -> TickResult:
        """Advance one tick: publish, refresh views, assemble and hand out."""
        timer = self._timer
        started = timer() if timer else 0.0
        previous = self.tick_count
        tick = self.tick_count = previous + 1
        result = TickResult(tick)
        schema = self.schema
        slow_tick = tick % schema.slow_every == 0
        changed = []
        for entity in list(self._dirty):
            if entity.publish(tick, slow_tick, self._slow, self._position):
                changed.append(entity)
                if self._aoi and entity.pos_tick == tick:
                    self._moved(entity, tick)
            if not entity.pending:
                self._dirty.discard(entity)
        result.published = len(changed)
        if self._aoi:
            phase = tick % self._refresh_every
            for client in self.clients.values():
                if client.slot == phase and self._needs_refresh(client):
                    self._refresh(client)
            if tick % PRUNE_EVERY_TICKS == 0:
                self._grid.prune(tick - self._refresh_every - 1)
        if timer:
            now = timer()
            result.phases["publish"] = now - started
            started = now
        if self._aoi:
            self._gather_watched(changed, previous)
        else:
            self._gather_shared(changed, previous)
        self._send_due(tick, writable, result)
        if timer:
            now = timer()
            result.phases["assemble"] = now - started
        result.changed, result.removed = self.take_writes()
        return result

    def _gather_watched(self, changed: list[Entity], previous: int) -> None:
        """Hand each changed entity's fragment to the clients holding it."""
        for client in self.clients.values():
            client.clean = not (client.stale or client.entering or client.leaving)
        for entity in changed:
            entity_id = entity.entity_id
            json_frag = cbor_frag = None
            for client in entity.watchers:
                if not client.clean and (
                    client.stale
                    or entity_id in client.entering
                    or entity_id in client.leaving
                ):
                    continue
                if client.codec == JSON:
                    if json_frag is None:
                        json_frag = entity.fragment(previous, JSON)
                    client.out.append(json_frag)
                else:
                    if cbor_frag is None:
                        cbor_frag = entity.fragment(previous, CBOR)
                    client.out.append(cbor_frag)

    def _gather_shared(self, changed: list[Entity], previous: int) -> None:
        """Without AOI every client holds every entity: one list per codec.

        A caught-up client takes the shared list, less its own entity's
        fragment; only one whose view is in flux (an entity entering or
        leaving) filters entity by entity.
        """
        if not changed:
            return
        shared: list[list[bytes] | None] = [None, None]
        index = {entity.entity_id: i for i, entity in enumerate(changed)}
        for client in self.clients.values():
            if client.stale:
                continue
            codec = client.codec
            if client.entering or client.leaving:
                skip = client.entering | client.leaving
                own = client.entity_id
                client.out = [
                    entity.fragment(previous, codec)
                    for entity in changed
                    if entity.entity_id not in skip and entity.entity_id != own
                ]
                continue
            frags = shared[codec]
            if frags is None:
                frags = shared[codec] = [e.fragment(previous, codec) for e in changed]
            at = index.get(client.entity_id)
            client.out = frags if at is None else frags[:at] + frags[at + 1 :]

    def _moved(self, entity: Entity, tick: int) -> None:
        grid = self._grid
        if entity.pos is None:
            grid.remove(entity, tick)
            if entity.entity_id not in self._unplaced:
                self._unplaced[entity.entity_id] = entity
                for client in self.clients.values():
                    if client.entity_id != entity.entity_id:
                        self._enter(client, entity)
        else:
            self._unplaced.pop(entity.entity_id, None)
            grid.place(entity, tick)

    def _send_due(
        self, tick: int, writable: Callable[[Any], bool], result: TickResult
    ) -> None:
        snapshot_tick = self._snapshot_every and tick % self._snapshot_every == 0
        check_every = self.schema.check_interval_ticks
        check_tick = check_every and tick % check_every == 0
        pressure = self._backpressure
        sends = result.sends
        for client in self.clients.values():
            busy = (
                client.stale
                or client.out
                or client.entering
                or client.leaving
                or client.ack is not None
            )
            if not (busy or snapshot_tick):
                client.on_time += 1
                continue
            if client.rate > 1 and tick % client.rate:
                client.stale = True
                client.out = []
                client.on_time += 1
                continue
            if not writable(client.client_id):
                self._fall_behind(client, tick, result)
                continue
            if snapshot_tick:
                sends.append((client.client_id, self.snapshot(client.client_id)))
            else:
                sends.append((client.client_id, self._delta(client, tick)))
            client.behind_since = None
            client.on_time += 1
            if client.rate > 1 and client.on_time >= pressure.recover_after_ticks:
                client.rate = 1
        if check_tick:
            zone = self.zone
            whole = self._whole_zone_members()
            for client in self.clients.values():
                if not client.stale:
                    base, digest = self._check_hash(client, whole)
                    sends.append(
                        (
                            client.client_id,
                            check_message(client.codec, zone, base, digest),
                        )
                    )

    def _fall_behind(self, client: ClientView, tick: int, result: TickResult) -> None:
        client.stale = True
        client.out = []
        client.on_time = 0
        if client.behind_since is None:
            client.behind_since = tick
        behind = tick - client.behind_since
        pressure = self._backpressure
        if behind >= pressure.close_after_ticks:
            result.closes.append(client.client_id)
        elif behind >= pressure.slow_after_ticks and client.rate == 1:
            client.rate = self.schema.slow_every if self.schema.slow_every > 1 else 2
