"""The configuration file read and checked into the frozen section objects.

Everything is checked when the file is loaded, before anything listens, so a
deploy with a bad file fails at once and says exactly where: every problem is
one line, ``<file>: <dotted.key>: <what is wrong>``, fit for a log or for
twistd's usage error. Secrets and the public key are resolved here too, so
the rest of the gateway never reads the environment or the file system for
its settings.

The dataclasses below are the schema: each field's name, type and default is
the TOML key's, and its metadata holds the checks that one driver
(:func:`section`) runs on the value. Values are only checked on the way in;
constructing the dataclasses directly (as tests do) trusts the caller.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from rtgateway.config.fields import (
    Invalid,
    convert,
    key,
    matching,
    non_negative,
    one_of,
    positive,
    quote,
    section,
    suggest,
)
from rtgateway.config.topics import EventConfig, TopicConfig, parse_events, parse_topics
from rtgateway.config.zones import parse_zones
from rtgateway.nats.client import parse_url
from rtgateway.routing.names import check_procedure
from rtgateway.state.schema import ZoneSchema
from rtgateway.wire.errors import RTGatewayError


class ConfigError(RTGatewayError):
    """The configuration cannot be used; the message is one line naming the key."""

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(
            f"{source}: {key}: {problem}" if key else f"{source}: {problem}"
        )


# -- checks: each raises ValueError with what is wrong, the driver adds the key


def _redis_url(value: str) -> None:
    # The URL is never echoed: it may hold the Redis password.
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("must start with redis:// or rediss://")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0:
        raise ValueError("port must be a number from 1 to 65535")
    database = parts.path.removeprefix("/")
    if database and not (database.isascii() and database.isdigit()):
        raise ValueError(f"database must be a number, got {quote(database)}")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")


def _nats_url(value: str) -> None:
    # Never echoed either: it may hold a token or a password.
    if "://" in value and value.split("://", 1)[0] not in ("nats", "tls"):
        raise ValueError("must start with nats:// or tls://")
    try:
        parse_url(value)
    except ValueError:
        raise ValueError(
            "is not a NATS URL (nats://host:port or tls://host:port)"
        ) from None


_ENV_NAME = matching(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name")


def _algorithm(value: str) -> None:
    if value.lower() == "none":
        raise ValueError('"none" is never accepted: tokens must be signed')
    if value not in _ALGORITHMS:
        listed = " ".join(_ALGORITHMS)
        suggestion = suggest(value, _ALGORITHMS)
        raise ValueError(
            f"unknown algorithm {quote(value)}{suggestion}; expected one of {listed}"
        )


def _default_gateway_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


_GATEWAY_ID = matching(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "letters, digits, . _ -")
_ENDPOINT = matching(r"[A-Za-z][\w-]*:.+", 'a Twisted endpoint string like "tcp:8080"')
_WS_PATH = matching(r"/[^?#\s]*", 'a path starting with "/", without a query')
_ORIGIN = matching(
    r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]+",
    'an origin like "https://game.example.com" (no path)',
)
_COMPONENT = matching(
    r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", '"package.module:ClassName"'
)
_LEVELS = one_of("debug", "info", "warn", "error", "critical")

# -- the schema


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Where this gateway listens and whom it serves."""

    id: str = field(
        default_factory=_default_gateway_id, metadata={"checks": (_GATEWAY_ID,)}
    )
    listen: str = key("tcp:port=8080:interface=127.0.0.1", _ENDPOINT)
    path: str = key("/ws", _WS_PATH)
    allowed_origins: tuple[str, ...] = key((), _ORIGIN)
    permessage_deflate: bool = True


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How the JWT presented at the upgrade is verified.

    ``secret`` and ``public_key`` hold the resolved key material; the
    ``*_env`` and ``*_file`` fields only say where it came from.
    """

    algorithms: tuple[str, ...] = key(("HS256",), _algorithm)
    secret: bytes | None = key(None, secret=True)
    secret_env: str | None = None
    public_key: bytes | None = key(None, derived=True)
    public_key_file: str | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = key(5.0, non_negative)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Every per-connection and per-process bound the gateway enforces."""

    max_message_bytes: int = key(65536, positive)
    max_batch: int = key(100, positive)
    rate_per_second: float = key(100.0, positive)
    rate_burst: int = key(200, positive)
    abuse_rejections: int = key(500, positive)
    abuse_window_s: float = key(10.0, positive)
    max_connections: int = key(20000, positive)
    max_connections_per_ip: int = key(100, positive)
    handshake_timeout_s: float = key(5.0, positive)
    close_timeout_s: float = key(1.0, positive)
    send_buffer_bytes: int = key(1048576, positive)
    read_budget_ms: float = key(8.0, positive)
    max_subscriptions: int = key(200, positive)


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    """Pings find dead peers long before TCP would notice them."""

    interval_s: float = key(15.0, positive)
    timeout_s: float = key(10.0, positive)
    idle_timeout_s: float = key(0.0, non_negative)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How long a dropped session waits for its player; token expiry warnings."""

    resume_window_s: float = key(120.0, non_negative)
    token_expiry_warning_s: float = key(60.0, non_negative)
    max_replay: int = key(10000, positive)


@dataclass(frozen=True, slots=True)
class ShutdownConfig:
    """A graceful drain, spread so players do not all reconnect at once."""

    drain_timeout_s: float = key(10.0, non_negative)
    reconnect_jitter_ms: int = key(5000, non_negative)


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Where shared state lives: in this process, or in Redis for a cluster.

    With ``bus = "nats"`` the traffic between gateways goes over NATS while
    Redis keeps the data; the NATS credentials come from environment
    variables named here (``nats_token``, ``nats_user`` and
    ``nats_password`` are what they resolved to).
    """

    kind: str = key("memory", one_of("memory", "redis"))
    redis_url: str = key("redis://127.0.0.1:6379/0", _redis_url)
    call_timeout_s: float = key(2.0, positive)
    bus: str = key("redis", one_of("redis", "nats"))
    nats_url: tuple[str, ...] = key(("nats://127.0.0.1:4222",), _nats_url)
    nats_token_env: str | None = key(None, _ENV_NAME)
    nats_user_env: str | None = key(None, _ENV_NAME)
    nats_password_env: str | None = key(None, _ENV_NAME)
    nats_tls_ca: str | None = key(None)
    nats_token: str | None = key(None, secret=True, derived=True)
    nats_user: str | None = key(None, derived=True)
    nats_password: str | None = key(None, secret=True, derived=True)


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """Bounds of presence calls, and how fast a dead gateway's players go offline."""

    max_players: int = key(500, positive)
    max_watch: int = key(1000, positive)
    zone_page_size: int = key(100, positive)
    zone_page_max: int = key(1000, positive)
    gateway_ttl_s: float = key(30.0, positive)
    reap_interval_s: float = key(10.0, positive)


@dataclass(frozen=True, slots=True)
class ProceduresConfig:
    """Routed procedures: how long a callee may take, how many calls may wait.

    ``timeouts`` (``[procedures.timeouts]``) maps a procedure to a call
    timeout of its own, for the few that are slow by nature. ``balance``
    picks among a gateway's own callees of a procedure.
    """

    call_timeout_s: float = key(10.0, positive)
    balance: str = key("least_busy", one_of("least_busy", "round_robin"))
    max_in_flight: int = key(10000, positive)
    max_schema_bytes: int = key(16384, positive)
    timeouts: Mapping[str, float] = field(
        default_factory=dict, metadata={"derived": True}
    )


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin methods that feed the debug inspector, and their bounds.

    A trace shows one session's frames to an admin connection: at most
    ``trace_max_sessions`` traces at once on a gateway, each at most
    ``trace_rate`` frames a second (the rest are counted as dropped), each
    frame cut to ``trace_max_frame_bytes`` of JSON. The statistics are
    sampled every ``stats_interval_s`` into a ring of ``stats_samples``.
    ``admin.zone`` lists at most ``zone_max_entities`` entities of a zone.
    """

    enabled: bool = True
    trace_max_sessions: int = key(8, positive)
    trace_rate: float = key(100.0, positive)
    trace_max_frame_bytes: int = key(4096, positive)
    connections_page_size: int = key(100, positive)
    connections_page_max: int = key(1000, positive)
    cluster_timeout_s: float = key(1.0, positive)
    stats_interval_s: float = key(1.0, positive)
    stats_samples: int = key(300, positive)
    zone_max_entities: int = key(1000, positive)


@dataclass(frozen=True, slots=True)
class DebugConfig:
    """The browser pages served under the gateway's port.

    The inspector at ``/debug/`` shows data only to admin tokens, so it is on
    by default. The demo at ``/demo/`` comes with ``POST /demo/token``, which
    mints a player token for anyone who asks: it is off by default and must
    never be on where strangers reach the gateway. Its tokens live
    ``demo_token_ttl_s`` seconds (the page asks for a new one on every
    reconnect) and put players in ``demo_zone``.
    """

    inspector: bool = True
    demo: bool = False
    demo_zone: str | None = None
    demo_token_ttl_s: float = key(900.0, positive)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Text for people at a terminal, JSON for log shippers."""

    format: str = key("text", one_of("text", "json"))
    level: str = key("info", _LEVELS)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Whether /metrics is served for Prometheus."""

    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ComponentsConfig:
    """User components; only their names are checked, so that loading the
    configuration never imports (runs) user code."""

    extra: tuple[str, ...] = key((), _COMPONENT)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; ``source`` is the file it came from."""

    source: str
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    procedures: ProceduresConfig = field(default_factory=ProceduresConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    components: ComponentsConfig = field(default_factory=ComponentsConfig)
    topics: Mapping[str, TopicConfig] = field(default_factory=dict)
    events: Mapping[str, EventConfig] = field(default_factory=dict)
    zones: Mapping[str, ZoneSchema] = field(default_factory=dict)


#: The fixed sections; ``topics``, ``events`` and ``zones`` are maps, parsed apart.
_MAPS = ("topics", "events", "zones")
_SECTIONS: dict[str, type] = {
    name: kind
    for name, kind in get_type_hints(Config).items()
    if name != "source" and name not in _MAPS
}

# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_MIN_BITS = 2048  # NIST SP 800-131A; PyJWT warns below it too
_KEY_KINDS = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), ("RSA",)),
    "ES256": ("EC secp256r1",),
    "ES384": ("EC secp384r1",),
    "ES512": ("EC secp521r1",),
    "EdDSA": ("Ed25519", "Ed448"),
}
_ALGORITHMS = (*_HMAC_MIN_BYTES, *_KEY_KINDS)

# -- the driver


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] = os.environ
) -> Config:
    """Read, parse and check the TOML file at ``path``."""
    source = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(
            source, None, f"cannot read config file: {error.strerror}"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        problem = f"invalid TOML: not UTF-8 (at byte offset {error.start})"
        raise ConfigError(source, None, problem) from None
    except tomllib.TOMLDecodeError as error:
        # tomllib ends its message with the position; put it first, like a key.
        message, _, position = str(error).rpartition(" (at ")
        problem = (
            f"{position.rstrip(')')}: invalid TOML: {message}"
            if message
            else str(error)
        )
        raise ConfigError(source, None, problem) from None
    return parse_config(
        data, source=source, base_dir=Path(path).parent, environ=environ
    )


def parse_config(
    data: dict[str, Any], *, source: str, base_dir: Path, environ: Mapping[str, str]
) -> Config:
    """Check parsed TOML; ``base_dir`` anchors relative file names."""
    try:
        for name, value in data.items():
            if name not in _SECTIONS and name not in _MAPS:
                if not isinstance(value, dict):
                    raise Invalid(name, "unknown key: keys belong in a [section]")
                known = [*_SECTIONS, *_MAPS]
                raise Invalid(name, "unknown section" + suggest(name, known))
        raw = {name: data.get(name, {}) for name in _SECTIONS}
        backend = raw["backend"]
        if isinstance(backend, dict) and isinstance(backend.get("nats_url"), str):
            raw["backend"] = {**backend, "nats_url": [backend["nats_url"]]}
        timeouts = _split_timeouts(raw)
        sections = {
            name: section(kind, raw[name], name) for name, kind in _SECTIONS.items()
        }
        sections["procedures"] = replace(
            sections["procedures"], timeouts=_procedure_timeouts(timeouts)
        )
        sections["auth"] = _resolve_auth(sections["auth"], base_dir, environ)
        sections["backend"] = _resolve_nats(sections["backend"], base_dir, environ)
        presence = sections["presence"]
        if presence.zone_page_size > presence.zone_page_max:
            raise Invalid(
                "presence.zone_page_size", "must not exceed presence.zone_page_max"
            )
        admin = sections["admin"]
        if admin.connections_page_size > admin.connections_page_max:
            raise Invalid(
                "admin.connections_page_size",
                "must not exceed admin.connections_page_max",
            )
        sections["topics"] = parse_topics(data.get("topics", {}))
        sections["events"] = parse_events(data.get("events", {}), base_dir)
        sections["zones"] = parse_zones(data.get("zones", {}))
        _check_demo(sections["debug"], sections["auth"], sections["zones"])
    except Invalid as error:
        raise ConfigError(source, error.key, error.problem) from None
    return Config(source=source, **sections)


def _check_demo(debug: DebugConfig, auth: AuthConfig, zones: Mapping[str, Any]) -> None:
    """The demo mints its tokens with the HS* secret and puts them in a zone."""
    if not debug.demo:
        return
    if debug.demo_zone not in zones:
        raise Invalid(
            "debug.demo_zone",
            "the demo needs one of the configured [zones]"
            + suggest(debug.demo_zone or "", zones),
        )
    if auth.secret is None or not any(a in _HMAC_MIN_BYTES for a in auth.algorithms):
        raise Invalid(
            "debug.demo", "the demo mints its tokens with an HS* algorithm and secret"
        )


# -- procedures: the one table inside a fixed section


def _split_timeouts(raw: dict[str, Any]) -> Any:
    """Take ``[procedures.timeouts]`` out of its section, which has no map field."""
    procedures = raw["procedures"]
    if not isinstance(procedures, dict) or "timeouts" not in procedures:
        return {}
    raw["procedures"] = {k: v for k, v in procedures.items() if k != "timeouts"}
    return procedures["timeouts"]


def _procedure_timeouts(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise Invalid("procedures.timeouts", "expected a table of procedure = seconds")
    timeouts = {}
    for name, value in raw.items():
        dotted = f"procedures.timeouts.{quote(name)}"
        try:
            check_procedure(name)
        except RTGatewayError as error:
            message = (
                error.data["errors"][0]["message"] if error.data else error.message
            )
            raise Invalid(dotted, message) from None
        timeouts[name] = convert(value, float, (positive,), dotted, False)
    return timeouts


# -- the NATS bus: only on a cluster, credentials from the environment


def _resolve_nats(
    backend: BackendConfig, base_dir: Path, environ: Mapping[str, str]
) -> BackendConfig:
    if backend.bus != "nats":
        return backend
    if backend.kind != "redis":
        raise Invalid("backend.bus", 'bus = "nats" needs kind = "redis"')
    if not backend.nats_url:
        raise Invalid("backend.nats_url", "must name at least one NATS server")
    if backend.nats_token_env is not None and backend.nats_user_env is not None:
        raise Invalid("backend.nats_token_env", "give a token or a user, not both")
    if (backend.nats_user_env is None) != (backend.nats_password_env is None):
        raise Invalid("backend.nats_user_env", "needs nats_password_env, and back")
    env = environ
    tls_ca = backend.nats_tls_ca
    if tls_ca is not None:
        path = base_dir / tls_ca
        if not path.is_file():
            raise Invalid("backend.nats_tls_ca", f"cannot read {path}")
        tls_ca = str(path)
    return replace(
        backend,
        nats_tls_ca=tls_ca,
        nats_token=_from_env(env, "backend.nats_token_env", backend.nats_token_env),
        nats_user=_from_env(env, "backend.nats_user_env", backend.nats_user_env),
        nats_password=_from_env(
            env, "backend.nats_password_env", backend.nats_password_env
        ),
    )


def _from_env(environ: Mapping[str, str], key: str, variable: str | None) -> str | None:
    if variable is None:
        return None
    if not environ.get(variable):
        raise Invalid(key, f"environment variable {variable} is not set or empty")
    return environ[variable]


# -- auth: the key material the configured algorithms need


def _resolve_auth(
    auth: AuthConfig, base_dir: Path, environ: Mapping[str, str]
) -> AuthConfig:
    if not auth.algorithms:
        raise Invalid("auth.algorithms", "must name at least one algorithm")
    hmac = [name for name in auth.algorithms if name in _HMAC_MIN_BYTES]
    asymmetric = [name for name in auth.algorithms if name in _KEY_KINDS]
    return replace(
        auth,
        secret=_secret(auth, hmac, environ),
        public_key=_public_key(auth, asymmetric, base_dir),
    )


def _need(algorithms: list[str], what: str) -> str:
    if len(algorithms) == 1:
        return f"algorithm {algorithms[0]} needs {what}"
    return f"algorithms {', '.join(algorithms)} need {what}"


def _secret(
    auth: AuthConfig, hmac: list[str], environ: Mapping[str, str]
) -> bytes | None:
    if not hmac:  # unused key material is not resolved, so it cannot fail
        return None
    if auth.secret is not None and auth.secret_env is not None:
        raise Invalid("auth.secret", "give secret or secret_env, not both")
    if auth.secret_env is not None:
        key, variable = "auth.secret_env", auth.secret_env
        if variable not in environ:
            raise Invalid(key, f"environment variable {variable} is not set")
        # os.environ decodes with surrogateescape; this gives the bytes back.
        secret = environ[variable].encode("utf-8", "surrogateescape")
        if not secret:
            raise Invalid(key, f"environment variable {variable} is empty")
    elif auth.secret is not None:
        key, secret = "auth.secret", auth.secret
    else:
        raise Invalid("auth.secret", "missing: " + _need(hmac, "secret or secret_env"))
    strictest = max(hmac, key=_HMAC_MIN_BYTES.__getitem__)
    if len(secret) < _HMAC_MIN_BYTES[strictest]:
        raise Invalid(
            key,
            f"too short: {len(secret)} bytes, {strictest} needs at least "
            f"{_HMAC_MIN_BYTES[strictest]} (RFC 7518 section 3.2)",
        )
    return secret


def _public_key(
    auth: AuthConfig, asymmetric: list[str], base_dir: Path
) -> bytes | None:
    if not asymmetric:
        return None
    key = "auth.public_key_file"
    if auth.public_key_file is None:
        raise Invalid(key, "missing: " + _need(asymmetric, "public_key_file"))
    path = base_dir / auth.public_key_file
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise Invalid(key, f"cannot read {path}: {error.strerror}") from None
    try:
        public_key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        # A private key here would also mean it is spread to every gateway.
        hint = " (it is a private key)" if b"PRIVATE KEY" in pem else ""
        raise Invalid(key, f"{path} is not a PEM public key{hint}") from None
    kind = _key_kind(public_key)
    for algorithm in asymmetric:
        if kind not in _KEY_KINDS[algorithm]:
            needed = " or ".join(_KEY_KINDS[algorithm])
            raise Invalid(
                key, f"{path} holds a key of type {kind}; {algorithm} needs {needed}"
            )
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < _RSA_MIN_BITS:
        raise Invalid(
            key,
            f"{path} holds a {public_key.key_size}-bit RSA key; "
            f"at least {_RSA_MIN_BITS} bits are needed",
        )
    return pem


def _key_kind(public_key: Any) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC {public_key.curve.name}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(public_key).__name__
