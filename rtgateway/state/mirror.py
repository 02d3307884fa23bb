"""A client's mirror of its view, built from state messages only.

What any client does with ``state.snapshot`` and ``state.delta``: a
snapshot replaces the mirror; a delta applies only to a mirror at its
``base_tick`` (otherwise the chain is broken and the client calls
``state.sync``). Benchmarks and tests use it to check every ``state.check``
against what a client would hold.
"""

from __future__ import annotations

from typing import Any

from rtgateway.state.viewhash import hash_entities


class BrokenChain(Exception):
    """A delta whose base is not the mirror's tick."""


class Mirror:
    """The entities one client holds, and the tick they are at."""

    __slots__ = ("entities", "own", "tick", "zone")

    def __init__(self, own: str | None = None) -> None:
        self.own = own
        self.zone: str | None = None
        self.tick: int | None = None
        #: ``{entity_id: (version, fields)}``.
        self.entities: dict[str, tuple[int, dict[str, Any]]] = {}

    def apply(self, method: str, params: dict[str, Any]) -> bool:
        """Apply one state message; False for a check whose hash differs.

        Raises :class:`BrokenChain` for a delta that does not follow.
        """
        if method == "state.snapshot":
            self.zone = params["zone"]
            self.tick = params["tick"]
            self.entities = {
                entity_id: (entry["v"], dict(entry["fields"]))
                for entity_id, entry in params["entities"].items()
            }
            return True
        if method == "state.delta":
            if params["base_tick"] != self.tick or params["zone"] != self.zone:
                raise BrokenChain(
                    f"delta from {params['base_tick']}, mirror at {self.tick}"
                )
            entities = self.entities
            for entity_id, entry in params["changed"].items():
                held = entities.get(entity_id)
                fields = dict(held[1]) if held is not None else {}
                fields.update(entry["fields"])
                entities[entity_id] = (entry["v"], fields)
            for entity_id in params["removed"]:
                entities.pop(entity_id, None)
            self.tick = params["tick"]
            return True
        if method == "state.check":
            return params["hash"] == self.hash()
        return True

    def hash(self) -> str:
        """The view hash of the mirror, the client's own entity excluded."""
        return hash_entities({k: v for k, v in self.entities.items() if k != self.own})
