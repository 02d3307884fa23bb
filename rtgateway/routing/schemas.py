"""Compiled JSON Schema validation with protocol-shaped errors.

Schemas are compiled once, when a method or event type is registered, by
jsonschema-rs (Rust): checking a small params object costs well under a
microsecond, so validation can stay on every message.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from rtgateway.wire.errors import InvalidParams

#: Enough to tell a client what to fix without echoing a huge payload back.
MAX_REPORTED_ERRORS = 10
MAX_MESSAGE_CHARS = 200


class SchemaDefinitionError(ValueError):
    """A schema given at registration is not a valid JSON Schema."""


def json_pointer(path: list[str | int]) -> str:
    """RFC 6901 pointer for a path of keys and indexes."""
    return "".join(
        "/" + str(part).replace("~", "~0").replace("/", "~1") for part in path
    )


def _refuse_remote(uri: str) -> Any:
    raise ValueError(f"only references inside the schema are allowed, not {uri}")


class CompiledSchema:
    """A schema compiled once and checked many times.

    ``local_only`` refuses references to other documents instead of
    fetching them: a schema that a client sends (a service's ``rpc.register``)
    must not make the gateway open connections, nor block the reactor while
    one is made.
    """

    __slots__ = ("_validator", "schema")

    def __init__(self, schema: dict[str, Any], *, local_only: bool = False) -> None:
        options: dict[str, Any] = {"retriever": _refuse_remote} if local_only else {}
        try:
            self._validator = jsonschema_rs.validator_for(schema, **options)
        except (ValueError, jsonschema_rs.ValidationError) as e:
            raise SchemaDefinitionError(f"invalid JSON Schema: {e}") from None
        self.schema = schema

    def check(self, instance: Any, prefix: tuple[str | int, ...] = ()) -> None:
        """Raise :class:`InvalidParams` listing what is wrong, by JSON pointer.

        ``prefix`` places the pointers inside an enclosing document (for
        example ``("data",)`` for an event's data inside publish params).
        """
        if self._validator.is_valid(instance):
            return
        errors: list[dict[str, str]] = []
        for error in self._validator.iter_errors(instance):
            path = [*prefix, *error.instance_path]
            if isinstance(error.kind, _UNEXPECTED_PROPERTIES):
                # Point at each unexpected member rather than at its parent.
                errors.extend(
                    {
                        "path": json_pointer([*path, name]),
                        "message": "unexpected property",
                    }
                    for name in error.kind.unexpected
                )
            else:
                errors.append(
                    {"path": json_pointer(path), "message": _short(error.message)}
                )
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
        raise InvalidParams(errors[:MAX_REPORTED_ERRORS])


_UNEXPECTED_PROPERTIES = (
    jsonschema_rs.ValidationErrorKind.AdditionalProperties,
    jsonschema_rs.ValidationErrorKind.UnevaluatedProperties,
)


def _short(message: str) -> str:
    if len(message) > MAX_MESSAGE_CHARS:
        return message[: MAX_MESSAGE_CHARS - 3] + "..."
    return message
