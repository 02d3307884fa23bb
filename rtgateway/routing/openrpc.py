"""The ``rpc.discover`` document: OpenRPC 1.3 generated from the registry.

Clients written from the docs can check their bindings against the live
gateway; a method's params schema becomes OpenRPC content descriptors
(by name), its result schema the result descriptor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rtgateway.routing.router import Method

OPENRPC_VERSION = "1.3.2"


def method_descriptor(method: Method) -> dict[str, Any]:
    """One OpenRPC method object."""
    schema = method.params.schema
    required = set(schema.get("required", ()))
    params = [
        {"name": name, "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]
    descriptor: dict[str, Any] = {
        "name": method.name,
        "summary": method.summary,
        "paramStructure": "by-name",
        "params": params,
        "result": {"name": "result", "schema": method.result.schema},
        "x-params-schema": schema,
    }
    if method.roles is not None:
        descriptor["x-roles"] = sorted(method.roles)
    return descriptor


def routed_descriptor(name: str) -> dict[str, Any]:
    """A procedure a backend service provides: named, its schemas unknown here."""
    return {
        "name": name,
        "summary": "Routed to a backend service.",
        "paramStructure": "by-name",
        "params": [],
        "result": {"name": "result", "schema": {}},
        "x-routed": True,
    }


def discover_document(
    methods: Iterable[Method], *, title: str, version: str, extensions: dict[str, Any]
) -> dict[str, Any]:
    """The whole OpenRPC document; ``extensions`` adds ``x-`` members."""
    document: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
        "methods": [method_descriptor(m) for m in methods],
    }
    document.update(extensions)
    return document
