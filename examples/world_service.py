"""An example world service: a zone's doors and pickups, and ``world.interact``.

The service owns a few world entities of one state zone: doors, which
players open and close, and pickups, which the first player to take them
removes. Players see them in their state snapshots and deltas like any
entity (``world.<zone>.<name>``), and act on them by calling the routed
procedure ``world.interact {entity}``, which rpc.discover describes with
its schemas.

The zone must be configured on the gateways with the fields used here::

    [zones.dungeon]
    fields.kind = { type = "string", max_length = 16 }
    fields.x = { type = "number", quantum = 0.01 }
    fields.y = { type = "number", quantum = 0.01 }
    fields.open = { type = "boolean" }

Run it with a service token (a JWT with the ``service`` role) in an
environment variable::

    RTGW_SERVICE_TOKEN=... python examples/world_service.py \\
        --url ws://127.0.0.1:8080/ws --zone dungeon

It prints ``ready`` once its entities are written and ``world.interact``
is registered, and runs until interrupted; it reconnects and registers
again by itself, over every ``--url`` given.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from twisted.internet import defer, task

from rtgateway.client import ClientOptions, ReconnectPolicy
from rtgateway.client.errors import Conflict
from rtgateway.service import Service, procedure
from rtgateway.wire.errors import NotFound

DOORS = {"door-1": (10.0, 5.0), "door-2": (20.0, 5.0)}
PICKUPS = {"potion-1": (3.0, 4.0), "potion-2": (6.0, 8.0), "key-1": (15.0, 2.0)}

INTERACT_PARAMS = {
    "type": "object",
    "properties": {"entity": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}},
    "required": ["entity"],
    "additionalProperties": False,
}
INTERACT_RESULT = {
    "type": "object",
    "properties": {
        "entity": {"type": "string"},
        "action": {"enum": ["opened", "closed", "taken"]},
        "version": {"type": "integer"},
    },
    "required": ["entity", "action"],
}


class WorldService(Service):
    """Doors and pickups of one zone, written as world entities."""

    def __init__(self, zone: str, reactor: Any = None) -> None:
        super().__init__(reactor)
        self.zone = zone

    async def populate(self) -> None:
        """Write the zone's doors (closed) and pickups, whatever was there."""
        for name, (x, y) in DOORS.items():
            fields = {"kind": "door", "x": x, "y": y, "open": False}
            await self.world_set(self.zone, name, fields)
        for name, (x, y) in PICKUPS.items():
            await self.world_set(self.zone, name, {"kind": "pickup", "x": x, "y": y})

    @procedure(
        "world.interact",
        params=INTERACT_PARAMS,
        result=INTERACT_RESULT,
        summary="Open or close a door, or take a pickup, of the zone.",
    )
    async def interact(self, params: dict[str, Any], caller: Any) -> dict[str, Any]:
        entity = params["entity"]
        if entity in DOORS:
            return await self._toggle(entity)
        if entity in PICKUPS:
            return await self._take(entity)
        raise NotFound(f"no door or pickup {entity!r} in {self.zone}")

    async def _toggle(self, door: str) -> dict[str, Any]:
        def flipped(fields: dict[str, Any]) -> dict[str, Any]:
            return {"open": not fields.get("open", False)}

        version = await self.world_update(self.zone, door, flipped)
        is_open = self.world[(self.zone, door)][1]["open"]
        action = "opened" if is_open else "closed"
        return {"entity": door, "action": action, "version": version}

    async def _take(self, pickup: str) -> dict[str, Any]:
        known = self.world.get((self.zone, pickup))
        if known is None:
            raise NotFound(f"{pickup} is already taken")
        try:  # only if nobody changed it since: two players cannot both take it
            await self.world_remove(self.zone, pickup, expected_version=known[0])
        except Conflict:
            raise NotFound(f"{pickup} is already taken") from None
        return {"entity": pickup, "action": "taken"}


async def serve(reactor: Any, options: argparse.Namespace) -> None:
    token = os.environ.get(options.token_env)
    if not token:
        raise SystemExit(f"set {options.token_env} to a service token")
    service = WorldService(options.zone, reactor)
    policy = ReconnectPolicy(initial_s=0.2, max_delay_s=2.0)
    await service.connect(options.url, token, ClientOptions(reconnect=policy))
    await service.populate()
    print("ready", flush=True)
    await defer.Deferred()  # until interrupted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--token-env", default="RTGW_SERVICE_TOKEN")
    parser.add_argument("--zone", default="dungeon")
    options = parser.parse_args(argv)
    task.react(lambda reactor: defer.ensureDeferred(serve(reactor, options)))


if __name__ == "__main__":
    sys.exit(main())
