"""Checking received events against the schemas the gateway publishes.

``rpc.discover`` lists every event type in its ``x-events`` extension with
the JSON Schema of its ``data``. A development build can turn the check on
to catch a binding that drifted from the server's configuration: an event
whose data does not match is not handed to the type's handlers (they were
written for the schema) but to ``client.invalid`` handlers, with the
reasons, and counted. Types the document does not list (the gateway's own
notifications) are not checked.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs


class EventValidator:
    """Compiled ``data`` schemas by event type."""

    def __init__(self, discover: dict[str, Any]) -> None:
        self._validators = {
            entry["name"]: jsonschema_rs.validator_for(entry.get("schema") or {})
            for entry in discover.get("x-events", [])
            if isinstance(entry, dict) and "name" in entry
        }

    def __len__(self) -> int:
        return len(self._validators)

    def errors(self, event_type: str, data: Any) -> list[str]:
        """Why ``data`` does not fit ``event_type`` (empty: it fits, or unknown)."""
        validator = self._validators.get(event_type)
        if validator is None:
            return []
        return [
            f"/{'/'.join(map(str, error.instance_path))}: {error.message}"
            for error in validator.iter_errors(data)
        ]
