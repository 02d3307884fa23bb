"""Shared fixtures: a gateway with clients in memory, on a task.Clock,
gateway processes, and one real redis-server (and nats-server) per test
module for the process tests."""

from __future__ import annotations

import pytest

from rtgateway.testing import GatewayFleet, MemoryGateway, make_config
from rtgateway.testing.nats import NatsServer
from rtgateway.testing.redis import RedisServer


@pytest.fixture
def memory_gateway():
    """A started in-memory gateway with the test configuration."""
    gateway = MemoryGateway(make_config())
    yield gateway
    gateway.stop()


@pytest.fixture
def make_memory_gateway():
    """Builds in-memory gateways from config overrides; stops them afterwards."""
    started: list[MemoryGateway] = []

    def build(overrides=None, **kwargs):
        gateway = MemoryGateway(make_config(overrides), **kwargs)
        started.append(gateway)
        return gateway

    yield build
    for gateway in started:
        gateway.stop()


@pytest.fixture
def fleet(tmp_path):
    """Starts gateway processes (``fleet.start(sections, name)``); stops them
    after the test, which fails if a gateway logged a traceback."""
    fleet = GatewayFleet(tmp_path)
    yield fleet
    fleet.stop()


@pytest.fixture(scope="module")
def redis_server():
    """One real redis-server for the module."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def nats_server():
    """One real nats-server for the module."""
    server = NatsServer().start()
    yield server
    server.close()
