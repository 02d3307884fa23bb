"""Shared fixtures: a gateway with clients in memory, on a task.Clock, and
one real redis-server per test module for the process tests."""

from __future__ import annotations

import pytest

from rtgateway.testing import MemoryGateway, make_config
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
