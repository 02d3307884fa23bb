"""The procedure registry contract, on the memory backends and a real Redis.

Entries of a (procedure, gateway) pair live ``ttl_ms`` after their last
renewal; withdrawing removes one at once; the index of names follows the
live entries.
"""

from __future__ import annotations

import pytest_twisted
from backend_harness import (
    fixture_harness,  # noqa: F401
    fixture_redis_server,  # noqa: F401
    unique,
)
from zope.interface.verify import verifyObject

from rtgateway.backends.interfaces import IBackends, IProcedureRegistry


@pytest_twisted.ensureDeferred
async def test_registry_provides_its_interface(harness):
    """The registry passes verifyObject; the backends carry it as ``procedures``."""
    assert verifyObject(IProcedureRegistry, harness.backends.procedures)
    assert verifyObject(IBackends, harness.backends)


@pytest_twisted.ensureDeferred
async def test_advertise_and_withdraw(harness):
    """Gateways advertised are listed in order; a withdrawn one is gone at once."""
    registry = harness.backends.procedures
    procedure = unique("game") + ".open"
    assert await registry.gateways(procedure) == []
    await registry.advertise([procedure], "gw-b", 60_000)
    await registry.advertise([procedure], "gw-a", 60_000)
    assert await registry.gateways(procedure) == ["gw-a", "gw-b"]
    assert procedure in await registry.procedures()
    await registry.withdraw(procedure, "gw-a")
    assert await registry.gateways(procedure) == ["gw-b"]
    await registry.withdraw(procedure, "gw-b")
    assert await registry.gateways(procedure) == []
    assert procedure not in await registry.procedures()


@pytest_twisted.ensureDeferred
async def test_entries_expire_unless_renewed(harness):
    """An entry not renewed within its TTL disappears; a renewed one stays."""
    registry = harness.backends.procedures
    procedure = unique("game") + ".pick"
    await registry.advertise([procedure], "gw-dead", 300)
    await registry.advertise([procedure], "gw-live", 300)
    await harness.elapse(200)
    await registry.advertise([procedure], "gw-live", 300)
    await harness.elapse(200)
    assert await registry.gateways(procedure) == ["gw-live"]
    assert procedure in await registry.procedures()
    await harness.elapse(200)
    assert await registry.gateways(procedure) == []
    assert procedure not in await registry.procedures()


@pytest_twisted.ensureDeferred
async def test_descriptions_follow_the_entries(harness):
    """A description advertised with an entry is read back, replaced by a later
    one, kept by renewals without one, and gone with the last entry."""
    registry = harness.backends.procedures
    procedure = unique("game") + ".open"
    other = unique("game") + ".bare"
    await registry.advertise([procedure, other], "gw-a", 60_000, {procedure: b"{}"})
    assert await registry.descriptions([procedure, other]) == {procedure: b"{}"}
    await registry.advertise([procedure], "gw-b", 60_000, {procedure: b'{"a":1}'})
    await registry.advertise([procedure], "gw-a", 60_000)
    assert await registry.descriptions([procedure]) == {procedure: b'{"a":1}'}
    await registry.withdraw(procedure, "gw-a")
    assert await registry.descriptions([procedure]) == {procedure: b'{"a":1}'}
    await registry.withdraw(procedure, "gw-b")
    assert await registry.descriptions([procedure]) == {}


@pytest_twisted.ensureDeferred
async def test_descriptions_expire_with_their_renewals(harness):
    """A description lives its TTL after the last advertise that carried it."""
    registry = harness.backends.procedures
    procedure = unique("game") + ".pick"
    await registry.advertise([procedure], "gw-a", 300, {procedure: b"{}"})
    await harness.elapse(400)
    assert await registry.descriptions([procedure]) == {}
