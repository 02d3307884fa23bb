"""The Python client of rtgateway: a sans-io core and two transports.

:class:`~rtgateway.client.core.ClientCore` makes every decision (reconnect,
resume, queue, dispatch, state); :mod:`rtgateway.client.twisted_transport`
and :mod:`rtgateway.client.asyncio_transport` only move frames and run
timers for it. Of the server, this package imports only ``rtgateway.wire``
and the sans-io state mirror and view hash.
"""

from rtgateway.client.actions import ConnectionState, Event
from rtgateway.client.backoff import ReconnectPolicy
from rtgateway.client.calls import HIGH, LOW, NORMAL, Call
from rtgateway.client.core import ClientCore
from rtgateway.client.errors import (
    CallTimeout,
    ClientClosed,
    ClientError,
    ConnectionLost,
    QueueFull,
    RemoteError,
)
from rtgateway.client.options import ClientOptions

__all__ = [
    "HIGH",
    "LOW",
    "NORMAL",
    "Call",
    "CallTimeout",
    "ClientClosed",
    "ClientCore",
    "ClientError",
    "ClientOptions",
    "ConnectionLost",
    "ConnectionState",
    "Event",
    "QueueFull",
    "ReconnectPolicy",
    "RemoteError",
]
