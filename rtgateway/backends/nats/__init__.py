"""The NATS bus of a Redis cluster (``[backend] bus = "nats"``).

Redis keeps sessions, history, presence and state; NATS carries what moves
between gateways and the subjects backend services use (:mod:`.bus`).
"""

from rtgateway.backends.nats.bus import NatsBus

__all__ = ["NatsBus"]
