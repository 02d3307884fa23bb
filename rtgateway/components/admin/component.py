"""The admin methods that feed the debug inspector.

``admin.connections``, ``admin.presence``, ``admin.zones`` and
``admin.stats`` answer for the whole cluster: this gateway answers for
itself and asks the others over the bus (:mod:`.cluster`), listing the
gateways that answered and those expected that did not. ``admin.zone``
reads a zone from the state store, which holds all of it for the cluster.
``admin.trace`` and ``admin.untrace`` follow a session frame by frame
(:mod:`.traces`), on this gateway or, through the bus, on the one it is
connected to (:mod:`.remote`). Only connections whose JWT has the
``admin`` role may call them; the others get -32001.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred

from rtgateway.components.admin.census import (
    RECORDS_PER_READ,
    local_census,
    merge_census,
)
from rtgateway.components.admin.cluster import ClusterQuestions
from rtgateway.components.admin.listing import local_page, merge_pages, parse_cursor
from rtgateway.components.admin.remote import RemoteTraces
from rtgateway.components.admin.schemas import (
    CONNECTIONS_RESULT,
    PER_GATEWAY_RESULT,
    PRESENCE_RESULT,
    SESSION_PARAMS,
    TRACE_RESULT,
    UNTRACE_RESULT,
    ZONE_PARAMS,
    ZONE_RESULT,
    connections_params,
    presence_params,
    stats_params,
)
from rtgateway.components.admin.stats import StatsRing
from rtgateway.components.admin.traces import Traces
from rtgateway.metrics import GatewayMetrics, StateMetrics
from rtgateway.state.schema import ZoneSchema
from rtgateway.wire.errors import InvalidParams, NotFound

ADMIN = ["admin"]
#: admin.trace_ended's reason when a session.refresh took the admin role away.
NOT_ADMIN = "not_admin"


class AdminComponent(Service):
    """The ``admin.*`` methods of the inspector (``admin.kick`` is the sessions')."""

    name = "admin"

    def __init__(
        self,
        *,
        router: Any,
        broker: Any,
        sessions: Any,
        state: Any,
        presence_store: Any,
        state_store: Any,
        session_store: Any,
        bus: Any,
        config: Any,
        clock: Any,
        metrics: GatewayMetrics,
        state_metrics: StateMetrics | None,
        connections: Callable[[], Collection[Any]],
    ) -> None:
        self._router = router
        self._sessions = sessions
        self._state = state
        self._presence = presence_store
        self._state_store = state_store
        self._session_store = session_store
        self._settings = settings = config.admin
        self._gateway_id = config.gateway.id
        self._zones = sorted(config.zones)
        self._zone_schemas = config.zones
        self._state_metrics = state_metrics
        self._traces = Traces(settings.trace_max_sessions)
        self._stats = StatsRing(
            clock=clock,
            interval_s=settings.stats_interval_s,
            samples=settings.stats_samples,
            metrics=metrics,
            state_metrics=state_metrics,
            zones=self._zones,
            connections=connections,
        )
        self._cluster = ClusterQuestions(
            bus=bus,
            broker=broker,
            gateway_id=self._gateway_id,
            clock=clock,
            timeout_s=settings.cluster_timeout_s,
            answer=self._answer,
            told=self._told,
        )
        self._bounds = {
            "rate": settings.trace_rate,
            "max_frame_bytes": settings.trace_max_frame_bytes,
        }
        self._remote = RemoteTraces(
            cluster=self._cluster,
            traces=self._traces,
            clock=clock,
            interval_s=settings.cluster_timeout_s,
            bounds=self._bounds,
            local_connection=self._local_connection,
        )
        sessions.add_listener(self)

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for name, handler, params, result, summary in self._methods():
            self._router.register(
                name,
                handler,
                params=params,
                result=result,
                roles=ADMIN,
                summary=summary,
            )
        self._stats.start()
        self._cluster.start()

    def stopService(self) -> None:
        for name, *_ in self._methods():
            self._router.unregister(name)
        self._cluster.stop()
        self._remote.stop()
        self._stats.stop()
        super().stopService()

    def _methods(self) -> list[tuple[str, Any, Any, Any, str]]:
        """Each method: its name, handler, params and result schemas, summary."""
        settings = self._settings
        page_max = settings.connections_page_max
        return [
            (
                "admin.connections",
                self.connections,
                connections_params(page_max),
                CONNECTIONS_RESULT,
                "The cluster's connections, filtered and paged (no tokens).",
            ),
            (
                "admin.trace",
                self.trace,
                SESSION_PARAMS,
                TRACE_RESULT,
                "Follow a session's frames in and out, as admin.frame pushes.",
            ),
            (
                "admin.untrace",
                self.untrace,
                SESSION_PARAMS,
                UNTRACE_RESULT,
                "Stop a trace; how many frames it showed and dropped.",
            ),
            (
                "admin.zones",
                self.zones,
                None,
                PER_GATEWAY_RESULT,
                "Each gateway's zones: entities, clients, tick p99, overruns.",
            ),
            (
                "admin.stats",
                self.stats,
                stats_params(settings.stats_samples),
                PER_GATEWAY_RESULT,
                "Each gateway's messages/s, p99 call latency, connections, "
                "reconnects and resumes, sampled over the last minutes.",
            ),
            (
                "admin.presence",
                self.presence,
                presence_params(page_max),
                PRESENCE_RESULT,
                "The cluster's players by status, and its zones with their "
                "players, paged.",
            ),
            (
                "admin.zone",
                self.zone,
                ZONE_PARAMS,
                ZONE_RESULT,
                "A zone's entities with their versions and fields, as the "
                "state store holds them.",
            ),
        ]

    # -- session listener ----------------------------------------------------

    def connection_detached(self, local: Any) -> None:
        self._traces.connection_gone(local.connection)
        self._remote.admin_gone(local.connection)
        self._stats.connection_closed(local.connection)

    def principal_changed(self, local: Any) -> None:
        """A token refreshed without the admin role ends the traces it ran."""
        connection = local.connection
        if not connection.principal.has_role("admin"):
            self._traces.admin_gone(connection, NOT_ADMIN)
            self._remote.admin_gone(connection, NOT_ADMIN)

    async def session_resumed(self, local: Any, record: Any) -> None:
        self._stats.resumes += 1

    # -- methods -------------------------------------------------------------

    async def connections(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        question = {
            "filter": params.get("filter", ""),
            "cursor": params.get("cursor"),
            "limit": params.get("limit", self._settings.connections_page_size),
        }
        return await self._cluster_page("connections", question, merge_pages)

    async def trace(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        session_id = params["session_id"]
        connection = self._local_connection(session_id)
        if connection is not None:
            self._traces.start(caller, connection, session_id)
            return {"session_id": session_id, **self._bounds}
        record = await self._session_store.load(session_id)
        if (
            record is None
            or not record.attached
            or record.gateway_id == self._gateway_id
        ):
            raise NotFound("no session of that id is connected to a gateway")
        result = await self._remote.start(caller, record.gateway_id, session_id)
        if self._sessions.by_connection_id(caller.connection_id) is None:
            self._remote.admin_gone(caller)  # it left while its trace started
        elif not caller.principal.has_role("admin"):
            self._remote.admin_gone(caller, NOT_ADMIN)  # and lost its role
        return result

    def untrace(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        session_id = params["session_id"]
        trace = self._traces.stop(caller, session_id)
        if trace is not None:
            return trace.counts()
        following = self._remote.stop_following(caller, session_id)
        if following is None:
            raise NotFound("this connection traces no session of that id")
        return following.counts()

    async def presence(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        question = {
            "cursor": params.get("cursor"),
            "limit": params.get("limit", self._settings.connections_page_size),
        }
        return await self._cluster_page("presence", question, merge_census)

    async def zones(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        return await self._per_gateway("zones", {})

    async def zone(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        """The zone as the state store holds it, shared by the whole cluster."""
        zone = params["zone"]
        if zone not in self._zones:
            raise NotFound("no state zone of that name is configured")
        stored = await self._state_store.load_zone(zone)
        most = self._settings.zone_max_entities
        shown = sorted(stored)[:most]
        schema = self._zone_schemas[zone]
        return {
            "zone": zone,
            "position": list(schema.position),
            "bounds": _bounds_of(schema),
            "count": len(stored),
            "entities": {
                entity_id: {
                    "v": stored[entity_id].version,
                    "fields": stored[entity_id].fields,
                }
                for entity_id in shown
            },
            "truncated": len(stored) > most,
        }

    async def stats(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        return await self._per_gateway("stats", {"last": params.get("last")})

    # -- answers, this gateway's own -------------------------------------------

    async def _cluster_page(
        self, what: str, question: dict[str, Any], merge: Callable[..., Any]
    ) -> dict[str, Any]:
        """One page of the cluster: this gateway's and the others', merged."""
        own = await maybeDeferred(self._answer, what, question, self._gateway_id)
        others, missing = await self._cluster.ask(what, question)
        page = merge([own, *others.values()], question["limit"])
        gateways = sorted([self._gateway_id, *others])
        return {**page, "gateways": gateways, "missing": missing}

    async def _per_gateway(self, what: str, params: dict[str, Any]) -> dict[str, Any]:
        own = self._answer(what, params, self._gateway_id)
        others, missing = await self._cluster.ask(what, params)
        return {"gateways": {**others, self._gateway_id: own}, "missing": missing}

    def _answer(self, what: str, params: dict[str, Any], asker: str) -> Any:
        """This gateway's answer to an admin question (its own or another's)."""
        if what == "trace":
            return self._remote.serve(asker, params)
        if what == "connections":
            return self._local_connections(params)
        if what == "presence":
            return Deferred.fromCoroutine(self._local_presence(params))
        if what == "zones":
            return self._local_zones()
        if what == "stats":
            return self._stats.series(params.get("last"))
        raise InvalidParams([{"path": "", "message": f"no admin question {what!r}"}])

    def _local_connections(self, question: dict[str, Any]) -> dict[str, Any]:
        state = self._state
        return local_page(
            self._gateway_id,
            self._sessions.all_local(),
            state.zone_of if state is not None else lambda _: None,
            question["filter"],
            parse_cursor(question["cursor"]),
            question["limit"],
        )

    def _told(self, sender: str, order: dict[str, Any]) -> None:
        self._remote.told(sender, order)

    def _local_connection(self, session_id: str) -> Any:
        """The connection of a session attached to this gateway, if any."""
        local = next(
            (s for s in self._sessions.all_local() if s.session_id == session_id), None
        )
        return local.connection if local is not None else None

    async def _local_presence(self, question: dict[str, Any]) -> dict[str, Any]:
        players = sorted({local.player_id for local in self._sessions.all_local()})
        records: list[Any] = []
        for start in range(0, len(players), RECORDS_PER_READ):
            batch = await self._presence.get(players[start : start + RECORDS_PER_READ])
            records += batch.values()
        return local_census(records, question["cursor"], question["limit"])

    def _local_zones(self) -> dict[str, Any]:
        active = self._state.active_zones() if self._state is not None else {}
        metrics = self._state_metrics
        now = self._stats.read()
        rows = []
        for zone in self._zones:
            figures = active.get(zone)
            rows.append(
                {
                    "zone": zone,
                    "active": figures is not None,
                    "tick": figures["tick"] if figures else None,
                    "entities": figures["entities"] if figures else 0,
                    "clients": figures["clients"] if figures else 0,
                    "tick_p99_ms": self._stats.tick_p99_ms(zone, now),
                    "ticks": int(metrics.ticks.value(zone)) if metrics else 0,
                    "overruns": int(metrics.overruns.value(zone)) if metrics else 0,
                }
            )
        return {"window_ms": self._stats.window_ms, "zones": rows}


def _bounds_of(schema: ZoneSchema) -> dict[str, list[float]] | None:
    """The zone's configured bounds, so a map can draw the whole field."""
    if schema.bounds_min is None or schema.bounds_max is None:
        return None
    return {"min": list(schema.bounds_min), "max": list(schema.bounds_max)}
