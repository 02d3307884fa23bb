"""Where the client is on each reliable topic, and which events are new.

PROTOCOL.md section 5: on a topic that keeps history every event carries
``offset`` and ``epoch``, one more offset per event within an epoch.
The client keeps, per topic, the position of the last event it handed to
the application (or the ``pubsub.subscribe`` result before any), sends
those as ``session.resume`` ``positions`` (or ``pubsub.subscribe`` ``since``
after a failed resume), and filters what arrives: an event at or below the
position is a duplicate and is dropped, so replays reach handlers exactly
once; an offset that jumps or a new epoch means events were lost for good,
which the application hears about like ``recovered: false``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Position:
    offset: int
    epoch: str

    def to_wire(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}


#: What :meth:`Positions.accept` says about an event.
NEW = "new"
DUPLICATE = "duplicate"
GAP = "gap"


class Positions:
    """The subscribed topics and the last position of each reliable one."""

    def __init__(self) -> None:
        #: ``topic -> Position`` or None (volatile, or no position known yet).
        self._topics: dict[str, Position | None] = {}
        #: Topics whose next event starts a new chain (after recovered: false).
        self._unanchored: set[str] = set()
        self.duplicates = 0
        self.gaps = 0

    def topics(self) -> list[str]:
        return sorted(self._topics)

    def __contains__(self, topic: str) -> bool:
        return topic in self._topics

    def get(self, topic: str) -> Position | None:
        return self._topics.get(topic)

    def subscribed(self, topic: str, result: dict[str, Any]) -> None:
        """Take the position from a ``pubsub.subscribe`` result.

        A position already held for the topic stays when the result is not
        ahead of it: the subscribe was sent with ``since``, and the events
        after that position are on their way.
        """
        offset, epoch = result.get("offset"), result.get("epoch")
        if offset is None or epoch is None:
            self._topics[topic] = None
            return
        held = self._topics.get(topic)
        if result.get("recovered") is False or held is None or held.epoch != epoch:
            self._unanchored.discard(topic)
            self._topics[topic] = Position(offset, epoch)

    def forget(self, topic: str) -> None:
        self._topics.pop(topic, None)
        self._unanchored.discard(topic)

    def keep_only(self, topics: list[str]) -> list[str]:
        """Drop the topics a resume did not restore; returns those dropped."""
        dropped = [topic for topic in self._topics if topic not in topics]
        for topic in dropped:
            self.forget(topic)
        return dropped

    def unanchor(self, topic: str) -> None:
        """History could not be replayed: the next event starts afresh."""
        if topic in self._topics:
            self._unanchored.add(topic)

    def resume_positions(self) -> dict[str, dict[str, Any]]:
        """The ``positions`` of a ``session.resume``."""
        return {
            topic: position.to_wire()
            for topic, position in self._topics.items()
            if position is not None
        }

    def accept(self, params: dict[str, Any]) -> str:
        """Whether a topic event is new, a duplicate or after a gap; moves on."""
        topic = params.get("topic")
        offset, epoch = params.get("offset"), params.get("epoch")
        if (
            not isinstance(topic, str)
            or not isinstance(offset, int)
            or not isinstance(epoch, str)
        ):
            return NEW
        held = self._topics.get(topic)
        if held is None or topic in self._unanchored:
            self._unanchored.discard(topic)
            self._topics[topic] = Position(offset, epoch)
            return NEW
        if epoch == held.epoch and offset <= held.offset:
            self.duplicates += 1
            return DUPLICATE
        self._topics[topic] = Position(offset, epoch)
        if epoch != held.epoch or offset != held.offset + 1:
            self.gaps += 1
            return GAP
        return NEW
