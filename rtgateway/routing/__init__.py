"""The routing layer: from a parsed call to its handler, from a publication
to its subscribers.

:mod:`~rtgateway.routing.router` is the dealer (method names to handlers,
their params schemas and roles) and :mod:`~rtgateway.routing.dispatch` the
path from a decoded message to its answer; :mod:`~rtgateway.routing.broker`
holds topic subscriptions and fans publications out to local sessions and
over the bus, with :mod:`~rtgateway.routing.topics` (who may subscribe or
publish), :mod:`~rtgateway.routing.events` (typed event types) and
:mod:`~rtgateway.routing.fanout` (a message encoded once per codec).
:mod:`~rtgateway.routing.names` spells topics and routed procedures,
:mod:`~rtgateway.routing.schemas` compiles JSON Schemas, and
:mod:`~rtgateway.routing.openrpc` describes methods for ``rpc.discover``.

Nothing here imports the components or the gateway: components register
with the router, and connections are reached through
:class:`rtgateway.interfaces.IConnection`.
"""
