"""An entity of a zone: its authoritative fields and what clients were sent.

Two copies of the fields are kept. ``fields`` is the authoritative state,
changed as inputs and world writes are accepted; ``published`` is what the
tick step has made visible to clients: fast-lane changes at the next tick,
slow-lane ones at the next slow tick. Every client mirror holds published
values, so deltas, snapshots and view hashes all read ``published``, with
``ptick`` (the tick each field was last published) telling which fields a
client at a given base tick lacks.
"""

from __future__ import annotations

from typing import Any

from rtgateway.state.encoding import fragment
from rtgateway.state.viewhash import canonical_member


class Entity:
    """One ``player.<id>`` or ``world.<zone>.<name>`` entity of a zone."""

    __slots__ = (
        "allowance",
        "canon",
        "cell",
        "entity_id",
        "fields",
        "frags",
        "incarnation",
        "last_input_seq",
        "last_ptick",
        "pending",
        "pos",
        "pos_tick",
        "ptick",
        "published",
        "pversion",
        "version",
        "watchers",
    )

    def __init__(
        self,
        entity_id: str,
        version: int,
        fields: dict[str, Any],
        incarnation: int,
        tick: int,
        position: tuple[str, ...],
    ) -> None:
        self.entity_id = entity_id
        self.version = version
        self.fields = dict(fields)
        self.published = dict(fields)
        self.pversion = version
        self.ptick = dict.fromkeys(fields, tick)
        self.last_ptick = tick
        self.pending: set[str] = set()
        self.incarnation = incarnation
        #: The client views that hold this entity (its own player's excluded).
        self.watchers: set[Any] = set()
        self.frags: dict[tuple[int | None, int], bytes] = {}
        self.canon: bytes | None = None
        self.allowance: Any = None
        self.last_input_seq: int | None = None
        self.cell: tuple[int, int] | None = None
        self.pos = _position(self.published, position)
        self.pos_tick = tick

    def change(self, values: dict[str, Any], version: int | None = None) -> bool:
        """Accept new authoritative values; True if any differs.

        The version grows by one per accepted change, or is set to
        ``version`` (a replica following another gateway's writes).
        """
        fields = self.fields
        changed = [
            name for name, value in values.items() if fields.get(name, _NONE) != value
        ]
        if not changed and version is None:
            return False
        for name in changed:
            fields[name] = values[name]
        self.pending.update(changed)
        self.version = version if version is not None else self.version + 1
        return bool(changed) or version is not None

    def publish(
        self,
        tick: int,
        slow_tick: bool,
        slow: frozenset[str],
        position: tuple[str, ...],
    ) -> bool:
        """Make pending changes visible at ``tick``; True if any was.

        Slow-lane fields wait for a slow tick; the version published is the
        authoritative one at the moment anything is.
        """
        pending = self.pending
        if slow_tick or not slow:
            due = pending
            self.pending = set()
        else:
            due = pending - slow
            if not due:
                return False
            self.pending = pending & slow
        published, fields, ptick = self.published, self.fields, self.ptick
        moved = False
        for name in due:
            published[name] = fields[name]
            ptick[name] = tick
            if name in position:
                moved = True
        self.pversion = self.version
        self.last_ptick = tick
        self.frags.clear()
        self.canon = None
        if moved:
            self.pos = _position(published, position)
            self.pos_tick = tick
        return True

    def fragment(self, since: int | None, codec: int) -> bytes:
        """The encoded member a client at tick ``since`` needs (None: all fields)."""
        key = (since, codec)
        frag = self.frags.get(key)
        if frag is None:
            published = self.published
            if since is None:
                fields = published
            else:
                fields = {n: published[n] for n, t in self.ptick.items() if t > since}
            frag = self.frags[key] = fragment(
                codec, self.entity_id, self.pversion, fields
            )
        return frag

    def canonical(self) -> bytes:
        """This entity's member of a view hash (published state)."""
        if self.canon is None:
            self.canon = canonical_member(self.entity_id, self.pversion, self.published)
        return self.canon


_NONE = object()


def _position(
    fields: dict[str, Any], names: tuple[str, ...]
) -> tuple[float, ...] | None:
    if not names:
        return None
    try:
        return tuple(fields[name] for name in names)
    except KeyError:
        return None
