"""Names of routed procedures: spelled like topics, outside the gateway's own.

A procedure is named like a topic (PROTOCOL.md section 5: 1 to 8
dot-separated segments of ``[A-Za-z0-9_-]{1,64}``, at most 255 characters),
so that it can travel as a bus subject. Its first segment must not be a
namespace of the gateway's own methods or topics: a service must never
shadow ``sys.ping`` or stand in for the state component, whatever the case
it spells the namespace in.
"""

from __future__ import annotations

from collections.abc import Iterable

from rtgateway.topics import split_topic
from rtgateway.wire.errors import Forbidden, RTGatewayError

#: Namespaces of the gateway's methods (and of its built-in topics, ``zone``).
RESERVED_NAMESPACES = frozenset(
    {"admin", "presence", "pubsub", "rpc", "session", "state", "sys", "world", "zone"}
)


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
