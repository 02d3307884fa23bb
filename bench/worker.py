"""What a load process is told (:class:`Plan`), and what a workload may use
of it (:class:`Worker`).

The load process itself is :mod:`bench.loadgen`'s; it runs the workloads of
:mod:`bench.workloads` (and of :mod:`bench.state_load` and
:mod:`bench.soak_load`), which know it only as a :class:`Worker`. So this
module imports nothing of the bench, and neither side imports the other
back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bench.wsclient import ClientConnection


@dataclass(frozen=True)
class Plan:
    """What one load process does: whom it connects to, and how many times."""

    url: str
    encoding: str
    connections: int
    #: Player ids are ``p<first_player + i>``, unique across processes.
    first_player: int
    #: The gateway's ``auth.secret``, to mint a JWT per connection; None
    #: (the baseline) sends no token and expects no welcome.
    secret: str | None
    lifetime_s: float
    #: Further servers (gateways of one cluster): connection ``i`` goes to
    #: ``urls[i % len(urls)]``, where ``urls`` is ``(url, *more_urls)``.
    more_urls: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.more_urls)


class Worker(Protocol):
    """A load process, as the workload handlers it runs see it."""

    #: What workloads keep between commands.
    state: dict[str, Any]

    @property
    def plan(self) -> Plan:
        """The plan the process was started with."""

    @property
    def connections(self) -> list[ClientConnection]:
        """The connections opened by ``open``, in plan order."""

    @property
    def tokens(self) -> list[str | None]:
        """The token of each planned connection, in plan order."""

    async def connect(
        self, url: str, token: str | None, timeout: float
    ) -> tuple[ClientConnection | None, str | None]:
        """Open one more connection; (connection, None) or (None, error)."""
