"""The JSON Schemas of the admin methods' params and results."""

from __future__ import annotations

from typing import Any


def one_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Params of one required member, nothing else."""
    return {
        "type": "object",
        "properties": {name: schema},
        "required": [name],
        "additionalProperties": False,
    }


SESSION_PARAMS = one_param(
    "session_id", {"type": "string", "minLength": 1, "maxLength": 64}
)
TRACE_RESULT = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "rate": {"type": "number"},
        "max_frame_bytes": {"type": "integer"},
    },
    "required": ["session_id", "rate", "max_frame_bytes"],
}
UNTRACE_RESULT = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "shown": {"type": "integer"},
        "dropped": {"type": "integer"},
    },
    "required": ["session_id", "shown", "dropped"],
}
#: Which gateways of the cluster answered a fanned-out admin call.
MISSING = {"type": "array", "items": {"type": "string"}}
CONNECTIONS_RESULT = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "connections": {"type": "array", "items": {"type": "object"}},
        "cursor": {"type": ["string", "null"]},
        "gateways": {"type": "array", "items": {"type": "string"}},
        "missing": MISSING,
    },
    "required": ["count", "connections", "cursor", "gateways", "missing"],
}
ZONE_PARAMS = one_param("zone", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"})
ZONE_RESULT = {
    "type": "object",
    "properties": {
        "zone": {"type": "string"},
        "position": {"type": "array", "items": {"type": "string"}},
        "bounds": {
            "type": ["object", "null"],
            "properties": {
                "min": {"type": "array", "items": {"type": "number"}},
                "max": {"type": "array", "items": {"type": "number"}},
            },
            "required": ["min", "max"],
        },
        "count": {"type": "integer"},
        "entities": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "v": {"type": "integer"},
                    "fields": {"type": "object"},
                },
                "required": ["v", "fields"],
            },
        },
        "truncated": {"type": "boolean"},
    },
    "required": ["zone", "position", "bounds", "count", "entities", "truncated"],
}
COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
PRESENCE_RESULT = {
    "type": "object",
    "properties": {
        "players": {"type": "integer"},
        "statuses": COUNTS,
        "zones": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "zone": {"type": "string"},
                    "players": {"type": "integer"},
                },
                "required": ["zone", "players"],
            },
        },
        "cursor": {"type": ["string", "null"]},
        "gateways": {"type": "array", "items": {"type": "string"}},
        "missing": MISSING,
    },
    "required": ["players", "statuses", "zones", "cursor", "gateways", "missing"],
}
PER_GATEWAY_RESULT = {
    "type": "object",
    "properties": {
        "gateways": {"type": "object", "additionalProperties": {"type": "object"}},
        "missing": MISSING,
    },
    "required": ["gateways", "missing"],
}


def connections_params(page_max: int) -> dict[str, Any]:
    """``admin.connections`` params, ``limit`` bounded by the configuration."""
    return {
        "type": "object",
        "properties": {
            "filter": {"type": "string", "maxLength": 128},
            "limit": {"type": "integer", "minimum": 1, "maximum": page_max},
            "cursor": {"type": ["string", "null"], "maxLength": 256},
        },
        "additionalProperties": False,
    }


def presence_params(page_max: int) -> dict[str, Any]:
    """``admin.presence`` params: a page of zones after ``cursor`` (a zone)."""
    return {
        "type": "object",
        "properties": {
            "limit": {"type": "integer", "minimum": 1, "maximum": page_max},
            "cursor": {"type": ["string", "null"], "maxLength": 64},
        },
        "additionalProperties": False,
    }


def stats_params(samples: int) -> dict[str, Any]:
    """``admin.stats`` params: how many of the latest samples (all by default)."""
    return {
        "type": "object",
        "properties": {"last": {"type": "integer", "minimum": 1, "maximum": samples}},
        "additionalProperties": False,
    }
