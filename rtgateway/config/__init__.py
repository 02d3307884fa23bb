"""The gateway's configuration: one TOML file, checked into frozen objects.

:func:`load_config` reads and checks the file (:mod:`rtgateway.config.loader`
holds it and the section dataclasses); :mod:`~rtgateway.config.fields` is the
one driver of every key's checks, and :mod:`~rtgateway.config.topics` and
:mod:`~rtgateway.config.zones` check the ``[topics]``, ``[events]`` and
``[zones]`` tables. The names below are the package's public ones.
"""

from rtgateway.config.loader import (
    AdminConfig,
    AuthConfig,
    BackendConfig,
    ComponentsConfig,
    Config,
    ConfigError,
    DebugConfig,
    GatewayConfig,
    HeartbeatConfig,
    LimitsConfig,
    LoggingConfig,
    MetricsConfig,
    PresenceConfig,
    ProceduresConfig,
    SessionConfig,
    ShutdownConfig,
    load_config,
    parse_config,
)
from rtgateway.config.topics import EventConfig, TopicConfig

__all__ = [
    "AdminConfig",
    "AuthConfig",
    "BackendConfig",
    "ComponentsConfig",
    "Config",
    "ConfigError",
    "DebugConfig",
    "EventConfig",
    "GatewayConfig",
    "HeartbeatConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PresenceConfig",
    "ProceduresConfig",
    "SessionConfig",
    "ShutdownConfig",
    "TopicConfig",
    "load_config",
    "parse_config",
]
