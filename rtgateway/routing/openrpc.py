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
    descriptor = _descriptor(
        method.name, method.summary, method.params.schema, method.result.schema
    )
    if method.roles is not None:
        descriptor["x-roles"] = sorted(method.roles)
    return descriptor


def routed_descriptor(
    name: str, description: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A procedure a backend service provides, described as its callee said.

    Without a description (a callee that registered only the name) the
    params and result are open.
    """
    if description is None:
        descriptor = _descriptor(name, ROUTED_SUMMARY, {}, {})
    else:
        descriptor = _descriptor(
            name,
            description.get("summary") or ROUTED_SUMMARY,
            description.get("params", {}),
            description.get("result", {}),
        )
    descriptor["x-routed"] = True
    return descriptor


ROUTED_SUMMARY = "Routed to a backend service."


def _descriptor(
    name: str, summary: str, schema: dict[str, Any], result: dict[str, Any]
) -> dict[str, Any]:
    required = set(schema.get("required", ()))
    params = [
        {"name": member, "required": member in required, "schema": prop}
        for member, prop in schema.get("properties", {}).items()
    ]
    return {
        "name": name,
        "summary": summary,
        "paramStructure": "by-name",
        "params": params,
        "result": {"name": "result", "schema": result},
        "x-params-schema": schema,
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
