"""``admin.connections``: a gateway's connections, filtered and paged.

Rows are ordered by gateway, then by connection number (``c2`` before
``c10``), the same order on every gateway, so a cluster's pages are the
merge of each gateway's page after the same cursor: the cursor names the
last row shown, as ``<gateway_id>/<connection_id>``. A page is built
from the sessions' own fields first and only its rows are described in
full (:meth:`IConnection.inspect`), so a call costs little more than a
scan of the gateway's sessions however many connections it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rtgateway.wire.errors import InvalidParams

#: Subscriptions listed in one row (all of them are counted).
MAX_TOPICS_SHOWN = 20

RowKey = tuple[str, int, str]


def row_key(gateway_id: str, connection_id: str) -> RowKey:
    """Where a connection's row sorts: by gateway, then by connection number."""
    return (gateway_id, len(connection_id), connection_id)


def parse_cursor(cursor: str | None) -> RowKey | None:
    """The row a cursor names, or None to start from the first."""
    if cursor is None:
        return None
    gateway_id, slash, connection_id = cursor.partition("/")
    if not (slash and gateway_id and connection_id):
        raise InvalidParams(
            [{"path": "/cursor", "message": "not a cursor this method returned"}]
        )
    return row_key(gateway_id, connection_id)


def local_page(
    gateway_id: str,
    sessions: Iterable[Any],
    zone_of: Callable[[str], str | None],
    text: str,
    after: RowKey | None,
    limit: int,
) -> dict[str, Any]:
    """This gateway's rows matching ``text`` after ``after``, at most ``limit``.

    ``text`` matches, case blind, within the player, session or connection
    id, the peer address, the zone or a subscription; empty matches all.
    """
    needle = text.lower()
    found = []
    for local in sessions:
        zone = zone_of(local.session_id)
        if needle and not _matches(gateway_id, local, zone, needle):
            continue
        found.append((row_key(gateway_id, local.connection.connection_id), local, zone))
    found.sort(key=lambda entry: entry[0])
    following = [entry for entry in found if after is None or entry[0] > after]
    return {
        "count": len(found),
        "connections": [
            _row(gateway_id, local, zone) for _, local, zone in following[:limit]
        ],
        "more": len(following) > limit,
    }


def merge_pages(pages: Iterable[dict[str, Any]], limit: int) -> dict[str, Any]:
    """One page of the cluster from each gateway's page after the same cursor."""
    pages = list(pages)
    rows = sorted(
        (row for page in pages for row in page["connections"]),
        key=lambda row: row_key(row["gateway_id"], row["connection_id"]),
    )
    shown = rows[:limit]
    more = len(rows) > limit or any(page["more"] for page in pages)
    last = shown[-1] if shown else None
    return {
        "count": sum(page["count"] for page in pages),
        "connections": shown,
        "cursor": (
            f"{last['gateway_id']}/{last['connection_id']}"
            if more and last is not None
            else None
        ),
    }


def _matches(gateway_id: str, local: Any, zone: str | None, needle: str) -> bool:
    connection = local.connection
    fields = [
        gateway_id,
        local.player_id,
        local.session_id,
        connection.connection_id,
        connection.peer_host,
        zone or "",
        *local.topics,
    ]
    return any(needle in value.lower() for value in fields)


def _row(gateway_id: str, local: Any, zone: str | None) -> dict[str, Any]:
    topics = sorted(local.topics)
    return {
        **local.connection.inspect(),
        "gateway_id": gateway_id,
        "player_id": local.player_id,
        "session_id": local.session_id,
        "subscriptions": topics[:MAX_TOPICS_SHOWN],
        "subscription_count": len(topics),
        "zone": zone,
    }
