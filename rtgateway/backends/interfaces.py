"""The backend contracts: sessions, history, presence, state and the bus.

Components and the broker depend on these interfaces only; ``memory`` (one
process) and ``redis`` (a cluster) implement them, and one contract test
suite runs against both. Every method returns a Deferred, the memory ones
included, so callers never branch. A backend that cannot reach its server
fails the Deferred with :class:`rtgateway.wire.errors.Unavailable` within
its call timeout: never a hang.

Every key of the Redis implementations belongs to one session, topic or
player, so the data can be sharded by key over several servers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zope.interface import Attribute, Interface

from rtgateway.wire.errors import Unavailable


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a topic's history: the offset of an event and its epoch.

    Offsets grow by one per stored event of a topic. The epoch names one
    unbroken run of offsets: when history is lost (expiry, a Redis restart
    without its data), the next event starts a new epoch, and positions of
    the old epoch can no longer be recovered.
    """

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of a topic's history; ``body`` is the encoded event."""

    offset: int
    epoch: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Replay:
    """What a history read found.

    ``recovered`` is False when the history no longer reaches back to the
    asked position (trimmed, expired, or another epoch); ``events`` is then
    empty and the reader must re-fetch the topic's state. ``top`` is the
    latest position, the one live events continue from.
    """

    events: tuple[StoredEvent, ...]
    top: Position
    recovered: bool


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as the store keeps it, readable by any gateway."""

    session_id: str
    player_id: str
    created_ms: int
    resume_digest: str
    gateway_id: str | None = None
    connection_id: str | None = None
    detached_ms: int | None = None
    #: When the session was created or last lost its connection; an
    #: attached session is active now.
    last_active_ms: int | None = None
    subscriptions: dict[str, Position | None] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def attached(self) -> bool:
        return self.connection_id is not None


class ISessionStore(Interface):
    """Sessions by id, resume-token digests to sessions, kicked players."""

    def create(record):
        """Store a new, attached session. Fires with None."""

    def load(session_id):
        """Fires with the :class:`SessionRecord`, or None if it does not exist."""

    def find(resume_digest):
        """Fires with the session id a resume-token digest belongs to, or None."""

    def attach(session_id, gateway_id, connection_id):
        """Make a connection the session's owner, atomically.

        Fires with the record as it was before (its ``gateway_id`` and
        ``connection_id`` name the previous owner, to be closed 4003), or
        None when the session does not exist. An attached session never
        expires.
        """

    def detach(session_id, connection_id, now_ms, window_ms):
        """Mark the session detached at ``now_ms`` (also its ``last_active_ms``),
        if ``connection_id`` still owns it.

        Fires with True when it did. A detached session disappears on its
        own ``window_ms`` after ``now_ms`` unless attached again (a gateway
        that dies leaves nothing behind for ever).
        """

    def set_subscription(session_id, topic, position):
        """Record a subscription and its position (None: a volatile topic)."""

    def drop_subscription(session_id, topic):
        """Forget a subscription."""

    def set_metadata(session_id, key, value):
        """Store one JSON-encodable metadata value of a component."""

    def add_stats(session_id, stats):
        """Add counters (messages and bytes in and out, resumes) to the session."""

    def end(session_id):
        """Delete the session; fires with its last record, or None if already gone.

        Exactly one of several concurrent callers gets the record, so a
        session's end is handled once.
        """

    def kick(player_id, now_ms):
        """Record that every session of the player created before now is over."""

    def kicked_at(player_id):
        """Fires with the time of the player's last kick in ms, or None."""


class ITopicHistory(Interface):
    """Reliable topics: offsets, epochs, bounded history, ordered broadcast."""

    def append(topic, body, size, ttl_ms):
        """Store ``body`` as the topic's next event and publish it on the bus.

        Fires with its :class:`Position`. The history keeps at most ``size``
        events, each for ``ttl_ms``. Publication on the topic's bus channel
        happens in offset order: no subscriber sees offset n+1 before n.
        """

    def read(topic, since, limit):
        """Fires with a :class:`Replay` of the events after ``since``.

        ``since`` is a :class:`Position` or None (nothing to replay: only
        the top is wanted). At most ``limit`` events are returned; more
        than that is reported as not recovered.
        """


class IBusHandler(Interface):
    """What receives bus traffic: the broker and the session manager."""

    def bus_message(channel, message):
        """A message arrived on a subscribed channel (bytes)."""

    def bus_reconnected():
        """The bus connection was lost and is back: messages may be missing."""


class IBus(Interface):
    """Channels between gateways; a gateway hears only what it subscribed to."""

    handler = Attribute("The :class:`IBusHandler` that receives messages.")

    def subscribe(channel):
        """Fires once messages of ``channel`` are being delivered to the handler."""

    def unsubscribe(channel):
        """Stop receiving ``channel``; fires with None."""

    def publish(channel, message):
        """Send ``message`` (bytes) to every gateway subscribed to ``channel``."""


class IServiceBus(Interface):
    """The subjects backend services speak directly (the NATS bus only).

    A gateway with callees of a procedure takes calls of it in the
    procedure's queue group, next to services listening there themselves;
    calls it sends there are answered through :meth:`on_reply`; and the
    publications services send for players reach one gateway.
    """

    def serve_procedure(procedure, handler):
        """Take calls of ``procedure``: ``handler(request_bytes, answer)``.

        ``answer(response_bytes)`` sends the JSON-RPC response to the caller;
        a calling gateway has already been told which gateway took the call.
        """

    def stop_procedure(procedure):
        """Stop taking calls of ``procedure`` (no callee left here)."""

    def call_procedure(procedure, body):
        """Send a JSON-RPC request to whoever serves ``procedure``; its reply key."""

    def on_reply(listener):
        """Call ``listener(key, msg)`` for each reply to :meth:`call_procedure`."""

    def serve_publications(handler):
        """Take services' publications: ``handler(topic, body, answer or None)``."""


class IBackends(Interface):
    """The backends of one gateway, started and stopped together."""

    sessions = Attribute("The :class:`ISessionStore`.")
    history = Attribute("The :class:`ITopicHistory`.")
    bus = Attribute("The :class:`IBus`.")
    presence = Attribute("The :class:`IPresenceStore`.")
    state = Attribute("The :class:`IStateStore`.")
    procedures = Attribute("The :class:`IProcedureRegistry`.")

    def ready():
        """True while every backend can serve calls (for /readyz)."""


class IProcedureRegistry(Interface):
    """Which gateways hold callees of each routed procedure (PROTOCOL.md 8).

    An entry is one (procedure, gateway) pair with its own expiry: the
    gateway renews it well within ``ttl_ms`` for as long as it has a callee
    of the procedure, so the entries of a gateway that died are gone
    ``ttl_ms`` after its last renewal at the latest, and those of one that
    stalled come back with its next renewal. Expiry is measured on one clock
    for the whole cluster (the Redis server's), never the gateways' own.
    """

    def advertise(procedures, gateway_id, ttl_ms, descriptions=None):
        """Create or renew the gateway's entry for each procedure; fires with None.

        ``descriptions`` maps some of the procedures to what their callee
        said of them (JSON bytes: schemas, summary); each is stored for the
        procedure, replacing any other gateway's, and lives ``ttl_ms`` after
        the last renewal that carried it.
        """

    def withdraw(procedure, gateway_id):
        """Drop the gateway's entry for ``procedure`` now; fires with None."""

    def gateways(procedure):
        """Fires with the sorted ids of the gateways whose entry is live."""

    def procedures():
        """Fires with the sorted names that have at least one live entry."""

    def descriptions(procedures):
        """Fires with ``{procedure: JSON bytes}`` for those that have a live one."""


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    """What is known of a player's presence (the full view, before privacy).

    ``status`` is what the player chose (online, away, busy, invisible);
    ``online`` whether any of its sessions is live; ``last_seen_ms`` when it
    was last seen going offline or invisible (None: never).
    """

    player_id: str
    online: bool = False
    status: str = "online"
    zone: str | None = None
    region: str | None = None
    activity: str | None = None
    last_seen_ms: int | None = None

    @property
    def visible(self) -> bool:
        """Whether others see the player online (and its zone)."""
        return self.online and self.status != "invisible"


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A presence before and after one store operation."""

    before: PresenceRecord
    after: PresenceRecord


class IPresenceStore(Interface):
    """Players' presence, zone memberships and the liveness of gateways.

    A player is online while it has at least one live session; sessions are
    counted per gateway, so that the sessions of a gateway that died can be
    found and ended by the others. Zone membership lists only players that
    others see online (visible); a zone's size is a counter, never a scan.
    """

    def connect(player_id, session_id, gateway_id):
        """A session of the player is live on ``gateway_id``: a :class:`PresenceChange`.

        A player coming online is "online" again (away and busy do not
        outlive its sessions; invisible does, so that it never shows up by
        reconnecting). Also used when a session moves to another gateway
        (resume): the player then stays online, with no change seen by anyone.
        """

    def disconnect(player_id, session_id, last_seen_ms, gateway_id=None):
        """The session ended: a :class:`PresenceChange`.

        When it was the player's last live session, the player goes offline
        with ``last_seen_ms`` (unless invisible: others last saw it when it
        turned invisible) and leaves its zone, its activity cleared. With
        ``gateway_id``, nothing happens unless the session is still on that
        gateway (a reaper must not end a session that resumed elsewhere).
        """

    def sessions(player_id):
        """Fires with ``{session_id: gateway_id}`` of the player's live sessions.

        Live means not ended: detached sessions still in their resume window
        are listed, on the gateway that last held them. This is the one
        cluster-wide index from a player to its sessions, so services can
        look them up (``session.get``) without a scan.
        """

    def update(player_id, changes, now_ms):
        """Apply ``changes`` (status, zone, region, activity): a PresenceChange.

        ``now_ms`` becomes ``last_seen_ms`` when an online player turns
        invisible: others see it go offline at that moment.
        """

    def get(player_ids):
        """Fires with ``{player_id: PresenceRecord}`` for every id asked."""

    def zone(zone, cursor, limit):
        """Fires with ``(count, player_ids, next_cursor)`` of a zone.

        Players are listed in id order, at most ``limit`` after ``cursor``
        (a player id, or None from the start); ``next_cursor`` is None at the
        end; ``count`` is the zone's size, read from a counter.
        """

    def gateway_alive(gateway_id, ttl_ms):
        """This gateway is alive for ``ttl_ms`` more; call it well within that.

        Fires with False when the gateway was not (or no longer) known: on
        the first call, and after others presumed it dead and claimed its
        sessions (a stall longer than the TTL), which it must then connect
        again.
        """

    def claim_dead_gateways():
        """Fires with ``[(gateway_id, player_id, session_id)]`` of dead gateways.

        A gateway whose liveness expired (it crashed, or stopped and its
        players did not come back elsewhere) is claimed by exactly one
        caller, which must then :meth:`disconnect` those sessions. Sessions
        that moved to a live gateway are not listed.
        """


@dataclass(frozen=True, slots=True)
class StoredEntity:
    """An entity of a zone as the state store keeps it.

    ``entity_id`` is ``player.<id>`` or ``world.<zone>.<name>``; ``version``
    grows by one per accepted change and is 1 on creation; ``fields`` is the
    full field map (JSON scalars, or lists of numbers), numbers exactly as
    written (12.34 stays 12.34).
    """

    entity_id: str
    version: int
    fields: dict[str, Any]


class ZoneFull(Unavailable):
    """Creating an entity would take the zone past its ``max_entities``."""

    message = "Zone full"

    def __init__(self, max_entities: int, message: str | None = None):
        super().__init__(message, {"max_entities": max_entities})
        self.max_entities = max_entities


class IStateStore(Interface):
    """The authoritative entities of every state zone, shared by the cluster.

    Every write publishes what it changed on the zone's bus channel
    (:func:`~rtgateway.backends.keys.zone_channel`) as
    :func:`~rtgateway.backends.zonefeed.encode_zone_batch` bytes, in the
    same atomic step: the order of the publications on a zone's channel is
    the order in which the store applied the writes. Every key of a zone
    carries the zone as its hash tag.
    """

    def load_zone(zone):
        """Fires with ``{entity_id: StoredEntity}`` of every entity of the zone.

        An unknown zone (or one whose entities were all removed) gives an
        empty dict.
        """

    def write_players(zone, gateway_id, changed, removed):
        """Store this gateway's player entities and publish the batch, in one step.

        ``changed`` is ``{entity_id: (version, fields)}``: ``fields`` holds
        only the fields that changed, merged into the stored ones (an entity
        not stored yet is created with them); ``version`` is the entity's
        new version, set as given (a player entity has one writer, so there
        is no check). ``removed`` lists entity ids to delete. Atomically and
        in one round trip, the batch
        ``encode_zone_batch(gateway_id, changed, removed)`` is published on
        the zone's channel; nothing is written nor published when both are
        empty. Fires with None.
        """

    def world_set(zone, entity_id, fields, expected_version, gateway_id, max_entities):
        """Compare-and-set a world entity; fires with its new version.

        With ``expected_version`` None the write always applies; otherwise
        it fails with :class:`~rtgateway.wire.errors.Conflict` carrying the
        ``current_version`` unless the stored version equals it (0: the
        entity must not exist; a missing entity's current version is 0).
        ``fields`` are merged into the stored ones (the entity is created
        at version 1 when absent) and the version grows by one. Creating an
        entity in a zone that already holds ``max_entities`` entities fails
        with :class:`ZoneFull` (updates of existing ones still apply). In
        the same atomic step, ``encode_zone_batch(gateway_id, {entity_id:
        (new_version, fields)}, [])`` is published on the zone's channel.
        """

    def world_remove(zone, entity_id, expected_version, gateway_id):
        """Delete a world entity atomically, by the same compare-and-set rule.

        Fails with :class:`~rtgateway.wire.errors.NotFound` when the entity
        does not exist (whatever ``expected_version``), with
        :class:`~rtgateway.wire.errors.Conflict` when ``expected_version``
        is not None and differs from the stored version. In the same step,
        ``encode_zone_batch(gateway_id, {}, [entity_id])`` is published on
        the zone's channel. Fires with None.
        """
