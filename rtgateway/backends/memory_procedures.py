"""The embedded procedure registry: (procedure, gateway) entries in memory.

Gateways of one process that share a :class:`ProcedureHub` see each
other's entries, so tests can route calls between them on one clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from rtgateway.backends.interfaces import IProcedureRegistry


@dataclass(slots=True)
class ProcedureHub:
    """procedure -> gateway -> the time (s) its entry runs out, and the
    procedure's description with the time it runs out."""

    entries: dict[str, dict[str, float]] = field(default_factory=dict)
    descriptions: dict[str, tuple[bytes, float]] = field(default_factory=dict)


@implementer(IProcedureRegistry)
class MemoryProcedureRegistry:
    """An :class:`IProcedureRegistry` in a :class:`ProcedureHub`."""

    def __init__(self, hub: ProcedureHub, clock: IReactorTime) -> None:
        self._hub = hub
        self._clock = clock

    def advertise(
        self,
        procedures: list[str],
        gateway_id: str,
        ttl_ms: int,
        descriptions: dict[str, bytes] | None = None,
    ) -> Deferred:
        now = self._clock.seconds()
        until = now + ttl_ms / 1000
        for procedure in procedures:
            gateways = self._hub.entries.setdefault(procedure, {})
            for dead in [g for g, ends in gateways.items() if ends <= now]:
                del gateways[dead]
            gateways[gateway_id] = until
            if descriptions and procedure in descriptions:
                self._hub.descriptions[procedure] = (descriptions[procedure], until)
        return succeed(None)

    def withdraw(self, procedure: str, gateway_id: str) -> Deferred:
        gateways = self._hub.entries.get(procedure)
        if gateways is not None:
            gateways.pop(gateway_id, None)
            if not self._live(procedure):
                del self._hub.entries[procedure]
                self._hub.descriptions.pop(procedure, None)
        return succeed(None)

    def _live(self, procedure: str) -> list[str]:
        now = self._clock.seconds()
        gateways = self._hub.entries.get(procedure, {})
        return sorted(g for g, until in gateways.items() if until > now)

    def gateways(self, procedure: str) -> Deferred:
        return succeed(self._live(procedure))

    def procedures(self) -> Deferred:
        return succeed(sorted(p for p in self._hub.entries if self._live(p)))

    def descriptions(self, procedures: list[str]) -> Deferred:
        now = self._clock.seconds()
        found = {}
        for procedure in procedures:
            description, until = self._hub.descriptions.get(procedure, (b"", 0.0))
            if until > now:
                found[procedure] = description
        return succeed(found)
