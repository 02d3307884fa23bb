"""The backend-service toolkit: a service process in a few decorated methods.

Use::

    from rtgateway.service import Service, procedure

    class Shop(Service):
        @procedure(
            "shop.buy",
            params={"type": "object", "properties": {"item": {"type": "string"}},
                    "required": ["item"]},
            result={"type": "object"},
            summary="Buy an item with the player's gold.",
        )
        async def buy(self, params, caller):
            ...
            return {"paid": 3}

    shop = Shop()
    await shop.connect("wss://gw.example.com/ws", service_token)

See :mod:`.base` (transports, events, world state) and :mod:`.procedures`
(declaring and answering procedures); ``examples/world_service.py`` is a
complete service.
"""

from rtgateway.service.base import Service
from rtgateway.service.procedures import ProcedureTable, procedure

__all__ = ["ProcedureTable", "Service", "procedure"]
