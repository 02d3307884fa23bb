"""The gateway's configuration: one TOML file, checked into frozen objects.

Everything is checked when the file is loaded, before anything listens, so a
deploy with a bad file fails at once and says exactly where: every problem is
one line, ``<file>: <dotted.key>: <what is wrong>``, fit for a log or for
twistd's usage error. Secrets and the public key are resolved here too, so
the rest of the gateway never reads the environment or the file system for
its settings.

The dataclasses below are the schema: each field's name, type and default is
the TOML key's, and its metadata holds the checks that one driver
(:func:`_section`) runs on the value. Values are only checked on the way in;
constructing the dataclasses directly (as tests do) trusts the caller.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from rtgateway.wire.errors import RTGatewayError

Check = Callable[[Any], None]


class ConfigError(RTGatewayError):
    """The configuration cannot be used; the message is one line naming the key."""

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(
            f"{source}: {key}: {problem}" if key else f"{source}: {problem}"
        )


class _Invalid(Exception):
    """A problem at a key, before the source file's name is attached."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


# -- checks: each raises ValueError with what is wrong, the driver adds the key


def _suggest(word: str, choices: Any) -> str:
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), by_lower, n=1)
    return f' (did you mean "{by_lower[close[0]]}"?)' if close else ""


def _one_of(*choices: str) -> Check:
    def check(value: str) -> None:
        if value not in choices:
            listed = ", ".join(f'"{choice}"' for choice in choices)
            suggestion = _suggest(value, choices)
            raise ValueError(
                f"expected one of {listed}, got {_quote(value)}{suggestion}"
            )

    return check


def _positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value:.15g}")


def _non_negative(value: float) -> None:
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value:.15g}")


def _matching(pattern: str, expected: str) -> Check:
    regex = re.compile(pattern)

    def check(value: str) -> None:
        if not regex.fullmatch(value):
            raise ValueError(f"expected {expected}, got {_quote(value)}")

    return check


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
        raise ValueError(f"database must be a number, got {_quote(database)}")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")


def _algorithm(value: str) -> None:
    if value.lower() == "none":
        raise ValueError('"none" is never accepted: tokens must be signed')
    if value not in _ALGORITHMS:
        listed = " ".join(_ALGORITHMS)
        suggestion = _suggest(value, _ALGORITHMS)
        raise ValueError(
            f"unknown algorithm {_quote(value)}{suggestion}; expected one of {listed}"
        )


def _key(
    default: Any, *checks: Check, secret: bool = False, derived: bool = False
) -> Any:
    """A field whose metadata holds the checks run on a value from the file
    (on each item of a list); ``secret`` values are never shown, in errors or
    reprs, so they cannot reach a log; ``derived`` fields are computed, not
    read."""
    meta = {"checks": checks, "secret": secret, "derived": derived}
    return field(default=default, repr=not secret, metadata=meta)


def _default_gateway_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


_GATEWAY_ID = _matching(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "letters, digits, . _ -")
_ENDPOINT = _matching(r"[A-Za-z][\w-]*:.+", 'a Twisted endpoint string like "tcp:8080"')
_WS_PATH = _matching(r"/[^?#\s]*", 'a path starting with "/", without a query')
_ORIGIN = _matching(
    r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]+",
    'an origin like "https://game.example.com" (no path)',
)
_COMPONENT = _matching(
    r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", '"package.module:ClassName"'
)
_LEVELS = _one_of("debug", "info", "warn", "error", "critical")

# -- the schema


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Where this gateway listens and whom it serves."""

    id: str = field(
        default_factory=_default_gateway_id, metadata={"checks": (_GATEWAY_ID,)}
    )
    listen: str = _key("tcp:port=8080:interface=127.0.0.1", _ENDPOINT)
    path: str = _key("/ws", _WS_PATH)
    allowed_origins: tuple[str, ...] = _key((), _ORIGIN)
    permessage_deflate: bool = True


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How the JWT presented at the upgrade is verified.

    ``secret`` and ``public_key`` hold the resolved key material; the
    ``*_env`` and ``*_file`` fields only say where it came from.
    """

    algorithms: tuple[str, ...] = _key(("HS256",), _algorithm)
    secret: bytes | None = _key(None, secret=True)
    secret_env: str | None = None
    public_key: bytes | None = _key(None, derived=True)
    public_key_file: str | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = _key(5.0, _non_negative)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Every per-connection and per-process bound the gateway enforces."""

    max_message_bytes: int = _key(65536, _positive)
    max_batch: int = _key(100, _positive)
    rate_per_second: float = _key(100.0, _positive)
    rate_burst: int = _key(200, _positive)
    abuse_rejections: int = _key(500, _positive)
    abuse_window_s: float = _key(10.0, _positive)
    max_connections: int = _key(20000, _positive)
    max_connections_per_ip: int = _key(100, _positive)
    handshake_timeout_s: float = _key(5.0, _positive)
    close_timeout_s: float = _key(1.0, _positive)
    send_buffer_bytes: int = _key(1048576, _positive)


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    """Pings find dead peers long before TCP would notice them."""

    interval_s: float = _key(15.0, _positive)
    timeout_s: float = _key(10.0, _positive)
    idle_timeout_s: float = _key(0.0, _non_negative)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How long a dropped session waits for its player; token expiry warnings."""

    resume_window_s: float = _key(120.0, _non_negative)
    token_expiry_warning_s: float = _key(60.0, _non_negative)


@dataclass(frozen=True, slots=True)
class ShutdownConfig:
    """A graceful drain, spread so players do not all reconnect at once."""

    drain_timeout_s: float = _key(10.0, _non_negative)
    reconnect_jitter_ms: int = _key(5000, _non_negative)


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Where shared state lives: in this process, or in Redis for a cluster."""

    kind: str = _key("memory", _one_of("memory", "redis"))
    redis_url: str = _key("redis://127.0.0.1:6379/0", _redis_url)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Text for people at a terminal, JSON for log shippers."""

    format: str = _key("text", _one_of("text", "json"))
    level: str = _key("info", _LEVELS)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Whether /metrics is served for Prometheus."""

    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ComponentsConfig:
    """User components; only their names are checked, so that loading the
    configuration never imports (runs) user code."""

    extra: tuple[str, ...] = _key((), _COMPONENT)


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
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    components: ComponentsConfig = field(default_factory=ComponentsConfig)


_SECTIONS: dict[str, type] = {
    name: kind for name, kind in get_type_hints(Config).items() if name != "source"
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
            if name not in _SECTIONS:
                if not isinstance(value, dict):
                    raise _Invalid(name, "unknown key: keys belong in a [section]")
                raise _Invalid(name, "unknown section" + _suggest(name, _SECTIONS))
        sections = {
            name: _section(kind, data.get(name, {}), name)
            for name, kind in _SECTIONS.items()
        }
        sections["auth"] = _resolve_auth(sections["auth"], base_dir, environ)
    except _Invalid as error:
        raise ConfigError(source, error.key, error.problem) from None
    return Config(source=source, **sections)


def _section(kind: type, raw: Any, name: str) -> Any:
    if not isinstance(raw, dict):
        raise _Invalid(name, f"expected a table, got {_describe(raw)}")
    hints = get_type_hints(kind)
    keys = {f.name: f for f in fields(kind) if not f.metadata.get("derived")}
    values = {}
    for key, value in raw.items():
        dotted = f"{name}.{key}"
        if key not in keys:
            raise _Invalid(dotted, "unknown key" + _suggest(key, keys))
        meta = keys[key].metadata
        values[key] = _convert(
            value, hints[key], meta.get("checks", ()), dotted, meta.get("secret", False)
        )
    return kind(**values)


def _convert(
    value: Any, hint: Any, checks: tuple[Check, ...], key: str, secret: bool
) -> Any:
    if get_origin(hint) is tuple:
        if not isinstance(value, list):
            raise _Invalid(key, f"expected a list, got {_describe(value, secret)}")
        item = get_args(hint)[0]
        return tuple(
            _convert(v, item, checks, f"{key}[{i}]", secret)
            for i, v in enumerate(value)
        )
    if isinstance(hint, UnionType):  # X | None: absent from the file means None
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    converted = _scalar(value, hint)
    if converted is None:
        expected = _EXPECTED[hint]
        if hint is float and isinstance(value, float):  # only nan and inf get here
            expected = "a finite number"
        raise _Invalid(key, f"expected {expected}, got {_describe(value, secret)}")
    for check in checks:
        try:
            check(converted)
        except ValueError as error:
            raise _Invalid(key, str(error)) from None
    return converted


_EXPECTED = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_EXPECTED[bytes] = _EXPECTED[str]  # the secret: TOML has no bytes
_KINDS = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
_KINDS |= {list: "a list", dict: "a table"}  # bool before int: bools are ints


def _scalar(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` if it converts without loss, else None.

    TOML tells 1 from 1.0 and true from 1; a number field takes either
    spelling of a whole number, but a bool is never a number.
    """
    if isinstance(value, bool) != (kind is bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if kind is int and isinstance(value, float):
        return int(value) if value.is_integer() else None
    if kind is float and isinstance(value, int):
        return float(value)
    if kind is bytes and isinstance(value, str):
        return value.encode("utf-8")
    return value if isinstance(value, kind) else None


def _quote(text: str) -> str:
    """A string as TOML would spell it, clipped, on one line."""
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted if len(quoted) <= 80 else quoted[:76] + '..."'


def _describe(value: Any, secret: bool = False) -> str:
    kind = next(
        (n for cls, n in _KINDS.items() if isinstance(value, cls)), "a datetime"
    )
    if secret or isinstance(value, list | dict):
        return kind
    if isinstance(value, str):
        return f"{kind} ({_quote(value)})"
    return f"{kind} ({str(value).lower() if isinstance(value, bool) else value})"


# -- auth: the key material the configured algorithms need


def _resolve_auth(
    auth: AuthConfig, base_dir: Path, environ: Mapping[str, str]
) -> AuthConfig:
    if not auth.algorithms:
        raise _Invalid("auth.algorithms", "must name at least one algorithm")
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
        raise _Invalid("auth.secret", "give secret or secret_env, not both")
    if auth.secret_env is not None:
        key, variable = "auth.secret_env", auth.secret_env
        if variable not in environ:
            raise _Invalid(key, f"environment variable {variable} is not set")
        # os.environ decodes with surrogateescape; this gives the bytes back.
        secret = environ[variable].encode("utf-8", "surrogateescape")
        if not secret:
            raise _Invalid(key, f"environment variable {variable} is empty")
    elif auth.secret is not None:
        key, secret = "auth.secret", auth.secret
    else:
        raise _Invalid("auth.secret", "missing: " + _need(hmac, "secret or secret_env"))
    strictest = max(hmac, key=_HMAC_MIN_BYTES.__getitem__)
    if len(secret) < _HMAC_MIN_BYTES[strictest]:
        raise _Invalid(
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
        raise _Invalid(key, "missing: " + _need(asymmetric, "public_key_file"))
    path = base_dir / auth.public_key_file
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise _Invalid(key, f"cannot read {path}: {error.strerror}") from None
    try:
        public_key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        # A private key here would also mean it is spread to every gateway.
        hint = " (it is a private key)" if b"PRIVATE KEY" in pem else ""
        raise _Invalid(key, f"{path} is not a PEM public key{hint}") from None
    kind = _key_kind(public_key)
    for algorithm in asymmetric:
        if kind not in _KEY_KINDS[algorithm]:
            needed = " or ".join(_KEY_KINDS[algorithm])
            raise _Invalid(
                key, f"{path} holds a key of type {kind}; {algorithm} needs {needed}"
            )
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < _RSA_MIN_BITS:
        raise _Invalid(
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
