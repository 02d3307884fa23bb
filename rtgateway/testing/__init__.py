"""The test kit: configurations, tokens, gateways in memory and in processes.

Shipped with the package so that projects building components on
rtgateway can test them the way rtgateway tests itself.
"""

from rtgateway.testing.memory import (
    TEST_SECRET,
    MemoryGateway,
    RecordingClient,
    make_config,
    token_for,
)
from rtgateway.testing.process import GatewayFleet, GatewayProcess, free_port

__all__ = [
    "TEST_SECRET",
    "GatewayFleet",
    "GatewayProcess",
    "MemoryGateway",
    "RecordingClient",
    "free_port",
    "make_config",
    "token_for",
]
