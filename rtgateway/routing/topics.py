"""Topic names and who may subscribe or publish to them.

A topic's first segment is its namespace; the namespace's configuration
(``[topics.<namespace>]``) decides permissions, history and payload size.
Components add namespaces of their own (presence, zones) the same way.
Authorization is kept apart from authentication (the JWT at the upgrade):
this only answers "may this principal do this to this topic?".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rtgateway.config.topics import TopicConfig
from rtgateway.routing.names import split_topic, topic_error
from rtgateway.wire.errors import Forbidden

SERVICE_ROLE = "service"


class TopicPolicy:
    """Namespaces and the permission rules of PROTOCOL.md section 5."""

    def __init__(self, namespaces: Mapping[str, TopicConfig]) -> None:
        self._namespaces: dict[str, TopicConfig] = dict(namespaces)

    def add_namespace(self, name: str, config: TopicConfig) -> None:
        """A component's own namespace; the configuration may not define it."""
        if name in self._namespaces:
            raise ValueError(f"namespace {name!r} is built in; remove [topics.{name}]")
        self._namespaces[name] = config

    def namespace(self, topic: str, path: str = "/topic") -> TopicConfig:
        """The configuration governing ``topic`` (-32602 for unknown ones)."""
        segments = split_topic(topic, path)
        config = self._namespaces.get(segments[0])
        if config is None:
            raise topic_error(f"unknown namespace {segments[0]!r}", path)
        return config

    def authorize(self, principal: Any, action: str, topic: str) -> TopicConfig:
        """Check ``action`` ("subscribe" or "publish"); -32001 when refused.

        Backend services (role ``service``) may do anything but what a
        namespace forbids to everybody (``none``).
        """
        config = self.namespace(topic)
        rule = config.subscribe if action == "subscribe" else config.publish
        if _allowed(rule, principal, topic):
            return config
        raise Forbidden(f"{action} is not allowed on {topic}")


def _allowed(rule: str, principal: Any, topic: str) -> bool:
    if rule == "none":
        return False
    if rule == "any" or SERVICE_ROLE in principal.roles:
        return True
    if rule == "self":
        segments = topic.split(".")
        return len(segments) > 1 and segments[1] == principal.player_id
    return False  # "service", and the caller is not one
