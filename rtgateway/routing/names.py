"""Names of topics and of routed procedures (PROTOCOL.md section 5).

A topic is 1 to 8 dot-separated segments of ``[A-Za-z0-9_-]{1,64}``, at
most 255 characters; its first segment is its namespace. A procedure is
named like a topic, so that it can travel as a bus subject, but its first
segment must not be a namespace of the gateway's own methods or topics: a
service must never shadow ``sys.ping`` or stand in for the state
component, whatever the case it spells the namespace in.

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
    {"admin", "presence", "pubsub", "rpc", "session", "state", "sys", "world", "zone"}
)


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
    """-32602 for a malformed name, -32001 for one in a reserved namespace.

    ``taken`` adds the namespaces (lower case) of methods registered by
    other components.
    """
    namespace = split_topic(name, path)[0].lower()
    if namespace in RESERVED_NAMESPACES or namespace in taken:
        raise Forbidden(f"the namespace {namespace!r} belongs to the gateway")


def is_routable(name: str, taken: Iterable[str] = ()) -> bool:
    """Whether a player's call of ``name`` may be a routed procedure."""
    try:
        check_procedure(name, taken)
    except RTGatewayError:
        return False
    return True
