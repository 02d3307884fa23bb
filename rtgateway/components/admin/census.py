"""``admin.presence``: the cluster's players counted by status and by zone.

The presence store knows each player's record and the size of a zone it
is asked about, but holds no count of players by status and no list of
the zones in use: those would take a scan of every player record. Each
gateway therefore counts the players of its own connections, reading
their records from the store (:data:`RECORDS_PER_READ` at a time), and
the gateway asked merges the answers. A player connected to two gateways
at once is counted by each of them.

Zones are listed by name, and a page of the cluster is the merge of each
gateway's page after the same cursor (a zone name), as
:mod:`.listing` does for connections: a zone among the first ``limit``
of the merge is among the first ``limit`` of every gateway that has it,
so its counts add up whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: The statuses counted; ``offline`` is not (nobody is connected as it).
STATUSES = ("online", "away", "busy", "invisible")
#: Player records read from the presence store in one call.
RECORDS_PER_READ = 500


def local_census(
    records: Iterable[Any], after: str | None, limit: int
) -> dict[str, Any]:
    """This gateway's counts, and its zones after ``after``, at most ``limit``.

    Invisible players count in their zone too: the admin sees where they
    are, which other players do not.
    """
    statuses = dict.fromkeys(STATUSES, 0)
    zones: dict[str, int] = {}
    for record in records:
        if not record.online or record.status not in statuses:
            continue  # went offline since its connection was listed
        statuses[record.status] += 1
        if record.zone is not None:
            zones[record.zone] = zones.get(record.zone, 0) + 1
    names = sorted(zone for zone in zones if after is None or zone > after)
    return {
        "statuses": statuses,
        "zones": [{"zone": zone, "players": zones[zone]} for zone in names[:limit]],
        "more": len(names) > limit,
    }


def merge_census(answers: Iterable[dict[str, Any]], limit: int) -> dict[str, Any]:
    """One page of the cluster from each gateway's page after the same cursor."""
    answers = list(answers)
    statuses = dict.fromkeys(STATUSES, 0)
    zones: dict[str, int] = {}
    for answer in answers:
        for status in STATUSES:
            statuses[status] += answer["statuses"].get(status, 0)
        for row in answer["zones"]:
            zones[row["zone"]] = zones.get(row["zone"], 0) + row["players"]
    names = sorted(zones)
    shown = names[:limit]
    more = len(names) > limit or any(answer["more"] for answer in answers)
    return {
        "players": sum(statuses.values()),
        "statuses": statuses,
        "zones": [{"zone": zone, "players": zones[zone]} for zone in shown],
        "cursor": shown[-1] if more and shown else None,
    }
