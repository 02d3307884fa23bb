"""A small NATS client on Twisted, shared by the NATS bus and the service toolkit.

:mod:`.protocol` is the sans-io NATS protocol (parser and serializers),
:mod:`.client` the connection kept up on a reactor, :mod:`.errors` what
calls fail with. See :class:`~.client.NatsClient` for the API.
"""

from rtgateway.nats.client import NatsClient, ServerURL, Subscription, parse_url
from rtgateway.nats.errors import (
    AuthorizationError,
    BufferFull,
    NatsError,
    NoResponders,
    PayloadTooLarge,
    RequestTimeout,
)
from rtgateway.nats.protocol import Msg

__all__ = [
    "AuthorizationError",
    "BufferFull",
    "Msg",
    "NatsClient",
    "NatsError",
    "NoResponders",
    "PayloadTooLarge",
    "RequestTimeout",
    "ServerURL",
    "Subscription",
    "parse_url",
]
