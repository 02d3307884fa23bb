"""State synchronization: zones ticking on the reactor's clock.

The sans-io core (:mod:`rtgateway.state`) decides what every client is
sent; this component drives it. A zone is *active* on a gateway while one
of its connections is in it: the gateway then listens to the zone's bus
channel, keeps a replica of the zone's entities (loaded from the state
store, then fed by the bus) and runs a ``LoopingCall`` at ``fast_hz``.
Each tick hands the core's messages to the connections and writes this
gateway's players to the store in one batch, which the store publishes on
the zone's channel for the other gateways' replicas.

Player entities have one writer, the gateway of their session; world
entities are written by services through the store's compare-and-set and
reach every replica, this gateway's included, through the bus only, so all
replicas apply them in the store's order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from rtgateway.backends.keys import zone_channel
from rtgateway.backends.zonefeed import decode_zone_batch
from rtgateway.metrics import StateMetrics
from rtgateway.state.engine import UpdateOutcome, ZoneEngine
from rtgateway.state.rules import check_fields
from rtgateway.state.schema import ZoneSchema
from rtgateway.wire import closecodes
from rtgateway.wire.errors import InvalidParams, NotFound, Unavailable

NAME = "^[A-Za-z0-9_-]{1,64}$"
FIELDS = {"type": "object", "maxProperties": 64}
JOIN_PARAMS = {
    "type": "object",
    "properties": {"zone": {"type": "string", "pattern": NAME}, "fields": FIELDS},
    "required": ["zone"],
    "additionalProperties": False,
}
UPDATE_PARAMS = {
    "type": "object",
    "properties": {
        "fields": FIELDS,
        "input_seq": {"type": "integer", "minimum": 0},
    },
    "required": ["fields"],
    "additionalProperties": False,
}
WORLD_SET_PARAMS = {
    "type": "object",
    "properties": {
        "zone": {"type": "string", "pattern": NAME},
        "entity": {"type": "string", "pattern": NAME},
        "fields": FIELDS,
        "expected_version": {"type": "integer", "minimum": 0},
    },
    "required": ["zone", "entity", "fields"],
    "additionalProperties": False,
}
WORLD_REMOVE_PARAMS = {
    "type": "object",
    "properties": {
        "zone": {"type": "string", "pattern": NAME},
        "entity": {"type": "string", "pattern": NAME},
        "expected_version": {"type": "integer", "minimum": 0},
    },
    "required": ["zone", "entity"],
    "additionalProperties": False,
}
EMPTY = {"type": "object", "additionalProperties": False}
METHODS = (
    "state.join",
    "state.update",
    "state.leave",
    "state.sync",
    "state.hash",
    "world.set",
    "world.remove",
)
#: The session metadata key naming the zone a session's player is in.
ZONE_KEY = "state_zone"
#: Removals from the store that failed are tried again this often, so many
#: times (half a minute of outage), before they are given up and logged.
REMOVAL_RETRY_S = 1.0
REMOVAL_RETRIES = 30


PLAYER_PREFIX = "player."


def player_entity(player_id: str) -> str:
    return PLAYER_PREFIX + player_id


def world_entity(zone: str, name: str) -> str:
    return f"world.{zone}.{name}"


@dataclass(slots=True, eq=False)
class Membership:
    """A session's player in a zone; ``connection`` None while detached."""

    session_id: str
    zone: str
    entity_id: str
    connection: Any


@dataclass(slots=True, eq=False)
class ActiveZone:
    """A zone this gateway ticks: its engine and its connections."""

    engine: ZoneEngine
    loop: LoopingCall
    connections: dict[str, Any] = field(default_factory=dict)
    #: Bus messages that arrived while the replica was loading (None: loaded).
    held: list[bytes] | None = None
    #: Fires once loaded, for whoever waits meanwhile (None: not loading).
    ready: Deferred | None = None


class StateComponent(Service):
    """The ``state.*`` and ``world.*`` methods, and the zones' tick loops."""

    name = "state"
    log = Logger()

    def __init__(
        self,
        *,
        router: Any,
        broker: Any,
        sessions: Any,
        presence: Any,
        store: Any,
        session_store: Any,
        bus: Any,
        zones: dict[str, ZoneSchema],
        gateway_id: str,
        clock: IReactorTime,
        metrics: StateMetrics,
        resume_window_s: float,
    ) -> None:
        self._router = router
        self._broker = broker
        self._sessions = sessions
        self._presence = presence
        self._store = store
        self._session_store = session_store
        self._bus = bus
        self._schemas = zones
        self._gateway_id = gateway_id
        self._clock = clock
        self._metrics = metrics
        self._resume_window_s = resume_window_s
        self._zones: dict[str, ActiveZone] = {}
        #: Memberships by session id, attached or detached.
        self._members: dict[str, Membership] = {}
        self._by_connection: dict[str, Membership] = {}
        #: Memberships by the player entity id, for bus messages about them.
        self._by_entity: dict[str, Membership] = {}
        sessions.add_listener(self)
        broker.add_reconnect_listener(self._bus_reconnected)

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        register = self._router.register
        register(
            "state.join",
            self.join,
            params=JOIN_PARAMS,
            summary="Enter a state zone with your player entity; a snapshot follows.",
        )
        register(
            "state.update",
            self.update,
            params=UPDATE_PARAMS,
            summary="Change your entity's fields (a notification is acked in a delta).",
        )
        register("state.leave", self.leave, result=EMPTY, summary="Leave your zone.")
        register("state.sync", self.sync, summary="A full snapshot of your view.")
        register("state.hash", self.hash, summary="The hash of your view.")
        register(
            "world.set",
            self.world_set,
            params=WORLD_SET_PARAMS,
            roles=["service"],
            summary="Create or change a world entity (compare-and-set on version).",
        )
        register(
            "world.remove",
            self.world_remove,
            params=WORLD_REMOVE_PARAMS,
            roles=["service"],
            result=EMPTY,
            summary="Remove a world entity (compare-and-set on version).",
        )

    def stopService(self) -> None:
        for name in METHODS:
            self._router.unregister(name)
        for zone in list(self._zones):
            self._deactivate(zone, force=True)
        super().stopService()

    # -- what the admin inspector reads -------------------------------------------

    def zone_of(self, session_id: str) -> str | None:
        """The zone a session's player is in on this gateway, if any."""
        member = self._members.get(session_id)
        return member.zone if member is not None else None

    def active_zones(self) -> dict[str, dict[str, int]]:
        """The zones this gateway ticks: their tick, entities and clients."""
        return {
            zone: {
                "tick": active.engine.tick_count,
                "entities": len(active.engine.entities),
                "clients": len(active.connections),
            }
            for zone, active in self._zones.items()
        }

    # -- player methods ----------------------------------------------------------

    async def join(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        local = self._require_session(caller)
        zone = params["zone"]
        schema = self._schemas.get(zone)
        if schema is None:
            raise NotFound(f"no state zone {zone!r}")
        fields = params.get("fields", {})
        checked = check_fields(schema, fields)
        if checked.errors:
            raise InvalidParams(checked.errors)
        active = await self._activate(zone)
        entity_id = player_entity(caller.principal.player_id)
        # Only once the new zone has taken the player does it leave its old
        # one: a refused join changes nothing.
        current = self._by_entity.get(entity_id)
        snapshot = active.engine.join(
            caller.connection_id,
            entity_id,
            caller.codec.NAME,
            fields,
            self._clock.seconds(),
        )
        if current is not None:
            self._hand_over(current, zone, caller, local.session_id)
        member = Membership(local.session_id, zone, entity_id, caller)
        self._adopt(member, active)
        self._metrics.messages.labels(zone).inc()
        caller.after_reply(lambda: caller.send_payload(snapshot))
        self._remember_zone(local.session_id, zone)
        if current is None or current.zone != zone:
            self._presence_zone(caller.principal.player_id, zone)
        return {
            "zone": zone,
            "tick": active.engine.tick_count,
            "entity": entity_id,
            "tick_hz": {"fast": schema.fast_hz, "slow": schema.slow_hz},
        }

    def _hand_over(
        self, current: Membership, zone: str, connection: Any, session_id: str
    ) -> None:
        """The player's previous membership gives way to its join of ``zone``.

        A player is in one zone at most, with one connection: another zone
        means its entity leaves the old one; the same zone from another
        connection or session takes the entity over, and the old one is no
        longer a member (its ``state.*`` calls answer -32003).
        """
        if current.zone != zone:
            self._leave(current)
        else:
            if current.connection not in (None, connection):
                self._drop_connection(current)
            if self._members.get(current.session_id) is current:
                del self._members[current.session_id]
        if current.session_id != session_id:
            self._remember_zone(current.session_id, None)

    def update(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        member = self._require_member(caller)
        engine = self._zones[member.zone].engine
        try:
            outcome: UpdateOutcome = engine.update(
                caller.connection_id,
                params["fields"],
                params.get("input_seq"),
                self._clock.seconds(),
            )
        except InvalidParams:
            self._metrics.inputs_rejected.inc()
            raise
        result: dict[str, Any] = {
            "version": outcome.version,
            "input_seq": outcome.input_seq,
        }
        if outcome.corrected:
            self._metrics.corrections.inc()
            result["corrected"] = outcome.corrected
        return result

    def leave(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        member = self._require_member(caller)
        self._leave(member)
        self._remember_zone(member.session_id, None)
        self._presence_zone(caller.principal.player_id, None)
        return {}

    def sync(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        member = self._require_member(caller)
        engine = self._zones[member.zone].engine
        snapshot = engine.snapshot(caller.connection_id)
        self._metrics.messages.labels(member.zone).inc()
        caller.after_reply(lambda: caller.send_payload(snapshot))
        return {"tick": engine.tick_count}

    def hash(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        member = self._require_member(caller)
        engine = self._zones[member.zone].engine
        catch_up = engine.catch_up(caller.connection_id)
        if catch_up is not None:
            caller.send_payload(catch_up)
        tick, digest = engine.view_hash(caller.connection_id)
        return {"zone": member.zone, "tick": tick, "hash": digest}

    # -- service methods ---------------------------------------------------------

    async def world_set(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        schema = self._schema(params["zone"])
        checked = check_fields(schema, params["fields"])
        if checked.errors:
            raise InvalidParams(checked.errors)
        version = await self._store.world_set(
            params["zone"],
            world_entity(params["zone"], params["entity"]),
            checked.values,
            params.get("expected_version"),
            self._gateway_id,
            schema.max_entities,
        )
        return {"version": version}

    async def world_remove(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        self._schema(params["zone"])
        await self._store.world_remove(
            params["zone"],
            world_entity(params["zone"], params["entity"]),
            params.get("expected_version"),
            self._gateway_id,
        )
        return {}

    # -- sessions (listener) -----------------------------------------------------

    def connection_detached(self, local: Any) -> None:
        """The connection is gone (dropped, closed, taken over): keep the entity."""
        member = self._by_connection.get(local.connection.connection_id)
        if member is not None:
            self._connection_gone(member)

    def _connection_gone(self, member: Membership) -> None:
        self._drop_connection(member)
        self._clock.callLater(
            self._resume_window_s + 5.0, self._forget_detached, member
        )
        self._deactivate(member.zone)

    async def session_resumed(self, local: Any, record: Any) -> None:
        """A resumed session gets its entity back and, after the reply, a snapshot."""
        connection = local.connection
        member = self._members.get(local.session_id)
        zone = member.zone if member is not None else record.metadata.get(ZONE_KEY)
        if zone is None or zone not in self._schemas:
            return
        if member is not None and member.connection is connection:
            return
        if member is not None and member.connection is not None:
            self._drop_connection(member)
        entity_id = player_entity(local.player_id)
        holder = self._by_entity.get(entity_id)
        if holder is not None and holder.session_id != local.session_id:
            return  # another session of the player has joined since
        active = await self._activate(zone)
        if entity_id not in active.engine.entities:
            return
        snapshot = active.engine.attach(
            connection.connection_id,
            entity_id,
            connection.codec.NAME,
            self._clock.seconds(),
        )
        self._adopt(Membership(local.session_id, zone, entity_id, connection), active)
        self._metrics.messages.labels(zone).inc()
        connection.after_reply(lambda: connection.send_payload(snapshot))

    def session_ended(self, record: Any, reason: str) -> None:
        """The session is over for good: its entity leaves the zone."""
        member = self._members.get(record.session_id)
        if member is not None:
            self._leave(member)

    # -- zones -------------------------------------------------------------------

    async def _activate(self, zone: str) -> ActiveZone:
        """The zone's replica, loaded and followed on the bus."""
        active = self._zones.get(zone)
        if active is None:
            schema = self._schemas[zone]
            engine = ZoneEngine(schema, timer=time.perf_counter)
            if schema.timestamps:
                engine.stamp_time = time.time
            loop = LoopingCall.withCount(lambda count: self._tick(zone, count))
            loop.clock = self._clock
            active = self._zones[zone] = ActiveZone(engine, loop, held=[])
            loading = Deferred.fromCoroutine(self._load(zone, active))
            if active.held is not None:
                active.ready = loading
        if active.ready is not None:
            waiting: Deferred[Any] = Deferred()

            def relay(result: Any) -> Any:
                # Every waiter gets the outcome; the load's own chain keeps it.
                if isinstance(result, Failure):
                    waiting.errback(result)
                else:
                    waiting.callback(result)
                return result

            active.ready.addBoth(relay)
            await waiting
        return active

    async def _load(self, zone: str, active: ActiveZone) -> ActiveZone:
        channel = zone_channel(zone)
        self._broker.add_channel_handler(channel, lambda m: self._bus_message(zone, m))
        try:
            await self._bus.subscribe(channel)
            stored = await self._store.load_zone(zone)
        except Exception:
            self._zones.pop(zone, None)
            self._broker.remove_channel_handler(channel)
            raise
        engine = active.engine
        for entity_id, entity in stored.items():
            engine.apply(entity_id, entity.version, entity.fields)
        held, active.held = active.held or [], None
        for message in held:
            self._bus_message(zone, message)
        active.ready = None
        interval = 1.0 / self._schemas[zone].fast_hz
        active.loop.start(interval, now=False).addErrback(
            lambda failure: self.log.failure(
                "the tick loop of zone {zone} stopped", failure=failure, zone=zone
            )
        )
        return active

    def _deactivate(self, zone: str, force: bool = False) -> None:
        active = self._zones.get(zone)
        if active is None or active.ready is not None:
            return
        if active.connections and not force:
            return
        self._flush(zone, *active.engine.take_writes())
        del self._zones[zone]
        if active.loop.running:
            active.loop.stop()
        channel = zone_channel(zone)
        self._broker.remove_channel_handler(channel)
        self._bus.unsubscribe(channel).addErrback(
            self._log_failure, "leaving {entity}", channel
        )

    def _adopt(self, member: Membership, active: ActiveZone) -> None:
        connection = member.connection
        self._members[member.session_id] = member
        self._by_connection[connection.connection_id] = member
        self._by_entity[member.entity_id] = member
        active.connections[connection.connection_id] = connection

    def _leave(self, member: Membership) -> None:
        """The member's entity leaves its zone, here and in the store."""
        self._members.pop(member.session_id, None)
        if self._by_entity.get(member.entity_id) is member:
            del self._by_entity[member.entity_id]
        active = self._zones.get(member.zone)
        if member.connection is not None:
            connection_id = member.connection.connection_id
            self._by_connection.pop(connection_id, None)
            if active is not None:
                active.connections.pop(connection_id, None)
                active.engine.leave(connection_id)
        if active is not None:
            active.engine.remove(member.entity_id)
            self._deactivate(member.zone)
        else:
            self._remove_stored(member.zone, [member.entity_id])

    def _drop_connection(self, member: Membership) -> None:
        """Detach the member's connection from its zone; the entity stays."""
        connection_id = member.connection.connection_id
        self._by_connection.pop(connection_id, None)
        active = self._zones.get(member.zone)
        if active is not None:
            active.engine.detach(connection_id)
            active.connections.pop(connection_id, None)
        member.connection = None

    def _forget_detached(self, member: Membership) -> None:
        """A detached member whose session ended or moved elsewhere."""
        if member.connection is None and self._members.get(member.session_id) is member:
            del self._members[member.session_id]
            if self._by_entity.get(member.entity_id) is member:
                del self._by_entity[member.entity_id]
            active = self._zones.get(member.zone)
            if active is not None:
                active.engine.release(member.entity_id)

    # -- the tick ----------------------------------------------------------------

    def _tick(self, zone: str, count: int) -> None:
        active = self._zones.get(zone)
        if active is None:
            return
        started = time.perf_counter()
        metrics = self._metrics
        if count > 1:
            metrics.overruns.labels(zone).inc(count - 1)
        connections = active.connections
        try:
            result = active.engine.tick(lambda cid: connections[cid].writable)
        except Exception:
            # Logged, and the zone ticks on: a bug in one tick must not stop
            # every client of the zone for good.
            self.log.failure("tick of zone {zone} failed", zone=zone)
            metrics.tick_failures.labels(zone).inc()
            return
        for client_id, payload in result.sends:
            connections[client_id].send_payload(payload)
        metrics.messages.labels(zone).inc(len(result.sends))
        for client_id in result.closes:
            metrics.slow_clients.inc()
            connection = connections[client_id]
            # Out of the zone at once, or every tick until the close is done
            # would close it again; the entity waits for a resume as usual.
            self._connection_gone(self._by_connection[client_id])
            connection.close(
                closecodes.SLOW_CONSUMER, "too far behind the zone's ticks"
            )
        self._flush(zone, result.changed, result.removed)
        elapsed = time.perf_counter() - started
        metrics.ticks.labels(zone).inc()
        metrics.tick_seconds.labels(zone).observe(elapsed)
        if elapsed > 1.0 / active.engine.schema.fast_hz:
            metrics.overruns.labels(zone).inc()

    def _flush(
        self,
        zone: str,
        changed: dict[str, tuple[int, dict[str, Any]]],
        removed: list[str],
    ) -> None:
        """Write this tick's player changes to the store, in one batch."""
        if not (changed or removed):
            return
        d = self._store.write_players(zone, self._gateway_id, changed, removed)
        d.addErrback(self._write_failed, zone, changed, removed)

    def _write_failed(
        self,
        failure: Any,
        zone: str,
        changed: dict[str, tuple[int, dict[str, Any]]],
        removed: list[str],
    ) -> None:
        """Keep the writes for the next tick's batch: the store is the truth.

        A zone no longer ticking here has no next batch: its removals are
        tried again on their own, or the players would stay in the store.
        """
        active = self._zones.get(zone)
        if active is not None:
            active.engine.rewrite(changed, removed)
        elif removed:
            self._clock.callLater(
                REMOVAL_RETRY_S, self._remove_stored, zone, removed, 1
            )
        self._log_failure(failure, "writing zone {entity}", zone)

    def _remove_stored(
        self, zone: str, entity_ids: list[str], attempt: int = 0
    ) -> None:
        """Remove players of a zone this gateway no longer ticks from the store."""
        if attempt:
            # A player back in the zone since is written again, not removed.
            entity_ids = [
                entity_id
                for entity_id in entity_ids
                if getattr(self._by_entity.get(entity_id), "zone", None) != zone
            ]
            if not entity_ids:
                return

        def failed(failure: Any) -> None:
            self._log_failure(failure, "removing players of zone {entity}", zone)
            if attempt < REMOVAL_RETRIES:
                self._clock.callLater(
                    REMOVAL_RETRY_S, self._remove_stored, zone, entity_ids, attempt + 1
                )

        self._store.write_players(zone, self._gateway_id, {}, entity_ids).addErrback(
            failed
        )

    # -- the bus -------------------------------------------------------------------

    def _bus_message(self, zone: str, message: bytes) -> None:
        active = self._zones.get(zone)
        if active is None:
            return
        if active.held is not None:
            active.held.append(message)
            return
        gateway_id, changed, removed = decode_zone_batch(message)
        engine = active.engine
        own = gateway_id == self._gateway_id
        for entity_id, (version, fields) in changed.items():
            if not self._written_here(entity_id, own):
                engine.apply(entity_id, version, fields)
        for entity_id in removed:
            if not self._written_here(entity_id, own):
                engine.remove(entity_id)

    def _written_here(self, entity_id: str, own: bool) -> bool:
        """Whether this gateway writes ``entity_id``, so the bus must not.

        The echo of this gateway's own player writes is never applied: the
        replica had them first, and a late echo of a player that has left
        since would bring it back. A player whose session moved to another
        gateway is written there now: its first change from there releases
        it here. World entities reach every replica through the bus only.
        """
        if own and entity_id.startswith(PLAYER_PREFIX):
            return True
        member = self._by_entity.get(entity_id)
        if member is None:
            return False
        if member.connection is not None:
            return True
        self._forget_detached(member)
        return False

    def _bus_reconnected(self) -> None:
        """Changes may have been missed: rebuild every replica from the store."""
        for zone, active in list(self._zones.items()):
            if active.ready is None:
                self._store.load_zone(zone).addCallbacks(
                    self._rebuild,
                    self._log_failure,
                    (zone,),
                    None,
                    ("rebuilding {entity}", zone),
                )

    def _rebuild(self, stored: dict[str, Any], zone: str) -> None:
        active = self._zones.get(zone)
        if active is None:
            return
        engine = active.engine
        # Only connected players: a detached one may have resumed on another
        # gateway, which writes it now; its old copy here must not win.
        local = {
            m.entity_id
            for m in self._by_entity.values()
            if m.zone == zone and m.connection is not None
        }
        for entity_id in list(engine.entities):
            if entity_id not in stored and entity_id not in local:
                engine.remove(entity_id)
        for entity_id, entity in stored.items():
            if entity_id not in local:
                engine.replace(entity_id, entity.version, entity.fields)
        engine.rewrite_all(local)

    # -- helpers -------------------------------------------------------------------

    def _schema(self, zone: str) -> ZoneSchema:
        schema = self._schemas.get(zone)
        if schema is None:
            raise NotFound(f"no state zone {zone!r}")
        return schema

    def _require_session(self, caller: Any) -> Any:
        local = self._sessions.local(caller)
        if local is None:
            raise NotFound("this connection has no session")
        return local

    def _require_member(self, caller: Any) -> Membership:
        member = self._by_connection.get(caller.connection_id)
        if member is None or member.zone not in self._zones:
            raise NotFound("not in a state zone: call state.join first")
        return member

    def _remember_zone(self, session_id: str, zone: str | None) -> None:
        self._session_store.set_metadata(session_id, ZONE_KEY, zone).addErrback(
            self._log_failure, "recording the zone of {entity}", session_id
        )

    def _presence_zone(self, player_id: str, zone: str | None) -> None:
        self._presence.set_zone(player_id, zone).addErrback(
            self._log_failure, "moving {entity} to its zone in presence", player_id
        )

    def _log_failure(self, failure: Any, what: str, entity: str) -> None:
        if failure.check(Unavailable):
            self.log.warn(what + " failed: the backend is unavailable", entity=entity)
        else:
            self.log.failure(what, failure=failure, entity=entity)
