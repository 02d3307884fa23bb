"""Client-side prediction and server reconciliation (Gabriel Gambetta's model).

The player's own inputs are applied locally at once, so the game answers
the key press without waiting a round trip; each is numbered
(``input_seq``) and kept until the gateway acknowledges it. An ``ack``
names the last input the server applied and, when the server had to
correct it (too fast, out of bounds), the authoritative values. The
predicted state is then rebuilt: the acknowledged state (the values sent
for that input, overlaid with ``corrected``) plus every input still
pending, replayed in order. A correction therefore moves the prediction
once, and the inputs made since keep their effect on top of it.

``apply(fields, command) -> fields`` is the game's own movement rule; it
must be deterministic and not change ``fields`` in place.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

Apply = Callable[[dict[str, Any], Any], dict[str, Any]]


class Predictor:
    """The predicted own state, the authoritative one and the pending inputs."""

    def __init__(
        self, apply: Apply, fields: dict[str, Any] | None = None, first_seq: int = 1
    ) -> None:
        self._apply = apply
        self.authoritative: dict[str, Any] = dict(fields or {})
        self.predicted: dict[str, Any] = dict(self.authoritative)
        #: ``(input_seq, command, fields sent)``, oldest first.
        self.pending: deque[tuple[int, Any, dict[str, Any]]] = deque()
        self.next_seq = first_seq
        self.corrections = 0
        #: The newest correction, for a debug view: ``(predicted, corrected)``,
        #: the prediction it replaced and the one rebuilt from it.
        self.last_correction: tuple[dict[str, Any], dict[str, Any]] | None = None

    def input(self, command: Any) -> tuple[int, dict[str, Any]]:
        """Apply ``command`` now; the ``input_seq`` and fields to send."""
        fields = self._apply(dict(self.predicted), command)
        seq = self.next_seq
        self.next_seq += 1
        self.predicted = fields
        self.pending.append((seq, command, dict(fields)))
        return seq, dict(fields)

    def ack(self, input_seq: int, corrected: dict[str, Any] | None = None) -> None:
        """The server applied every input up to ``input_seq``: rebase and replay."""
        acked: dict[str, Any] | None = None
        while self.pending and self.pending[0][0] <= input_seq:
            seq, _, fields = self.pending.popleft()
            if seq <= input_seq:
                acked = fields
        if acked is None and not corrected:
            return  # an ack of inputs already reconciled
        base = dict(self.authoritative if acked is None else acked)
        if corrected:
            self.corrections += 1
            base.update(corrected)
        self.authoritative = base
        mispredicted = self.predicted
        self._replay()
        if corrected:
            self.last_correction = (mispredicted, dict(self.predicted))

    def rebase(self, fields: dict[str, Any]) -> None:
        """Take the own entity from a snapshot: it holds every input applied.

        The pending inputs are dropped: the snapshot may already include
        them, and replaying an input twice would move the player twice.
        """
        self.authoritative = dict(fields)
        self.pending.clear()
        self.predicted = dict(fields)

    def _replay(self) -> None:
        state = dict(self.authoritative)
        for _, command, _ in self.pending:
            state = self._apply(state, command)
        self.predicted = state
