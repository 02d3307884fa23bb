"""Names of topics and of routed procedures (PROTOCOL.md section 5).

A topic is 1 to 8 dot-separated segments of ``[A-Za-z0-9_-]{1,64}``, at
most 255 characters; its first segment is its namespace. A procedure is
named like a topic, so that it can travel as a bus subject, but its first
segment must not be a namespace of the gateway's own methods or topics: a
service must never shadow ``sys.ping`` or stand in for the state
component, whatever the case it spells the namespace in.

The ``world`` namespace is shared: world services name their procedures
there (``world.interact``), since doors and pickups are world entities.
Only the gateway's own methods in it (``world.set``, ``world.remove``)
are refused, by exact name in any case; that the state component
registers them does not reserve the rest of the namespace.

These rules import nothing else of the project but the wire's errors, so
the configuration can check names with them as the router does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rtgateway.wire.errors import Forbidden, InvalidParams, RTGatewayError

SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TOPIC_LENGTH = 255
MAX_SEGMENTS = 8

#: Namespaces of the gateway's methods (and of its built-in topics, ``zone``).
RESERVED_NAMESPACES = frozenset(
    {"admin", "presence", "pubsub", "rpc", "session", "state", "sys", "zone"}
)
#: Namespaces services share with the gateway, and the gateway's methods in
#: each (lower case), the only names of it refused.
SHARED_NAMESPACES = {"world": frozenset({"world.set", "world.remove"})}


def topic_error(message: str, path: str = "/topic") -> InvalidParams:
    """The -32602 a bad topic gets, pointing at the params member."""
    return InvalidParams([{"path": path, "message": message}])


def split_topic(topic: str, path: str = "/topic") -> list[str]:
    """The topic's segments; -32602 unless it is a well-formed topic name."""
    segments = topic.split(".")
    if (
        len(topic) > MAX_TOPIC_LENGTH
        or len(segments) > MAX_SEGMENTS
        or not all(SEGMENT.fullmatch(s) for s in segments)
    ):
        raise topic_error(
            f"a topic is 1 to {MAX_SEGMENTS} dot-separated segments of letters, "
            f"digits, _ or - (at most 64 each, {MAX_TOPIC_LENGTH} in all)",
            path,
        )
    return segments


def check_procedure(
    name: str, taken: Iterable[str] = (), path: str = "/procedure"
) -> None:
    """-32602 for a malformed name, -32001 for a name the gateway keeps.

    The gateway keeps every name in a reserved namespace, its own methods in
    a shared one, and every name in ``taken``: the namespaces (lower case)
    of methods registered by other components, shared ones excepted.
    """
    namespace = split_topic(name, path)[0].lower()
    shared = SHARED_NAMESPACES.get(namespace)
    if shared is not None:
        if name.lower() in shared:
            raise Forbidden(f"{name.lower()!r} is a method of the gateway")
    elif namespace in RESERVED_NAMESPACES or namespace in taken:
        raise Forbidden(f"the namespace {namespace!r} belongs to the gateway")


def is_routable(name: str, taken: Iterable[str] = ()) -> bool:
    """Whether a player's call of ``name`` may be a routed procedure."""
    try:
        check_procedure(name, taken)
    except RTGatewayError:
        return False
    return True
