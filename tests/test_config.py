"""Tests for rtgateway.config: loading, defaults, and one-line errors."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rtgateway.config import (
    AuthConfig,
    Config,
    ConfigError,
    LimitsConfig,
    load_config,
    parse_config,
)
from rtgateway.wire.errors import RTGatewayError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "rtgateway.toml"
DOCS = ROOT / "docs" / "configuration.rst"
SECRET = "s" * 32
HS = {"secret": SECRET}


def parse(
    data: dict[str, Any], environ: dict[str, str] | None = None, **kw: Any
) -> Config:
    kw.setdefault("base_dir", Path("/nonexistent"))
    return parse_config(data, source="x.toml", environ=environ or {}, **kw)


def error(
    data: dict[str, Any], environ: dict[str, str] | None = None, **kw: Any
) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(data, environ, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert message == f"x.toml: {info.value.key}: {info.value.problem}"
    return info.value


def with_auth(**sections: Any) -> dict[str, Any]:
    return {"auth": HS, **sections}


def write_public_key(path: Path, private_key: Any) -> Path:
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.write_bytes(pem)
    return path


# -- the shipped development configuration


def test_shipped_config_loads_without_environment() -> None:
    """config/rtgateway.toml loads with an empty environment (quick start)."""
    config = load_config(SHIPPED, environ={})
    assert config.source == str(SHIPPED)
    assert config.auth.algorithms == ("HS256",)
    assert config.auth.secret is not None and len(config.auth.secret) >= 32


def test_shipped_config_is_local_and_in_memory() -> None:
    """The development config listens on loopback only and needs no Redis."""
    config = load_config(SHIPPED, environ={})
    assert config.gateway.listen == "tcp:port=8080:interface=127.0.0.1"
    assert config.backend.kind == "memory"


def test_shipped_config_sets_defaults() -> None:
    """Apart from the development secret, the shipped file holds the defaults."""
    shipped = load_config(SHIPPED, environ={})
    defaults = Config(source=shipped.source)
    for section in dataclasses.fields(Config)[1:]:
        if section.name in ("topics", "events", "zones"):  # examples, not defaults
            continue
        expected = getattr(defaults, section.name)
        if section.name == "auth":
            expected = dataclasses.replace(expected, secret=shipped.auth.secret)
        assert getattr(shipped, section.name) == expected, section.name


def test_shipped_config_mentions_every_key() -> None:
    """Every section and key appears in the shipped file, set or commented out."""
    text = SHIPPED.read_text()
    for section in dataclasses.fields(Config)[1:]:
        if section.name in ("topics", "events", "zones"):  # maps, checked below
            continue
        assert f"\n[{section.name}]\n" in text
        for key in dataclasses.fields(getattr(Config(source=""), section.name)):
            if key.metadata.get("derived"):
                continue
            pattern = rf"^(# )?{key.name} = "
            assert re.search(pattern, text, re.M), f"{section.name}.{key.name}"


def test_shipped_config_shows_every_topic_and_event_key() -> None:
    """The shipped file shows a namespace and event types with every key."""
    from rtgateway.config.topics import EventConfig, TopicConfig

    config = load_config(SHIPPED, environ={})
    text = SHIPPED.read_text()
    assert config.topics["chat"].reliable
    assert config.events["chat.message"].schema["required"] == ["text"]
    for kind in (TopicConfig, EventConfig):
        for key in dataclasses.fields(kind):
            assert re.search(rf"^{key.name} = ", text, re.M), key.name


def toml_examples() -> list[str]:
    blocks = re.findall(
        r"^\.\. code-block:: toml\n\n((?:    .*\n|\n)+)", DOCS.read_text(), re.M
    )
    return [textwrap.dedent(block) for block in blocks]


def test_documented_examples_load(tmp_path: Path) -> None:
    """The TOML examples in docs/configuration.rst are valid configurations."""
    production, with_secret = toml_examples()
    key = write_public_key(
        tmp_path / "jwt-public.pem", rsa.generate_private_key(65537, 2048)
    )
    path = tmp_path / "gateway.toml"
    path.write_text(production)
    config = load_config(path, environ={})
    assert config.gateway.listen.startswith("haproxy:ssl:")
    assert config.auth.public_key == key.read_bytes()
    assert config.backend.kind == "redis"
    path.write_text(with_secret)
    config = load_config(path, environ={"RTGW_JWT_SECRET": "p" * 64})
    assert config.auth.secret == b"p" * 64


# -- defaults and values


def test_defaults() -> None:
    """Every section may be left out; each key then takes its documented default."""
    config = parse({"auth": HS})
    assert config.gateway.listen == "tcp:port=8080:interface=127.0.0.1"
    assert config.gateway.path == "/ws"
    assert config.gateway.allowed_origins == ()
    assert config.gateway.permessage_deflate is True
    assert config.auth == AuthConfig(secret=SECRET.encode())
    assert config.auth.leeway_s == 5
    assert config.limits == LimitsConfig()
    assert (config.limits.max_message_bytes, config.limits.max_batch) == (65536, 100)
    assert (config.limits.rate_per_second, config.limits.rate_burst) == (100, 200)
    assert (config.limits.abuse_rejections, config.limits.abuse_window_s) == (500, 10)
    assert config.limits.max_connections == 20000
    assert config.limits.max_connections_per_ip == 100
    assert config.limits.handshake_timeout_s == 5
    assert config.limits.send_buffer_bytes == 1048576
    assert config.limits.read_budget_ms == 8
    assert (config.heartbeat.interval_s, config.heartbeat.timeout_s) == (15, 10)
    assert config.heartbeat.idle_timeout_s == 0
    assert config.session.resume_window_s == 120
    assert config.session.token_expiry_warning_s == 60
    assert config.shutdown.drain_timeout_s == 10
    assert config.shutdown.reconnect_jitter_ms == 5000
    assert config.backend.kind == "memory"
    assert config.backend.redis_url == "redis://127.0.0.1:6379/0"
    assert (config.logging.format, config.logging.level) == ("text", "info")
    assert config.metrics.enabled is True
    assert config.components.extra == ()


def test_default_gateway_id_is_host_and_pid() -> None:
    """Without gateway.id, gateways on one host get distinct ids from their pids."""
    assert parse({"auth": HS}).gateway.id == f"{socket.gethostname()}-{os.getpid()}"


def test_values_are_typed() -> None:
    """Whole-number floats become ints, ints become floats, lists become tuples."""
    config = parse(
        with_auth(
            limits={"max_batch": 7.0, "rate_per_second": 3},
            gateway={"allowed_origins": ["https://*.example.com"]},
        )
    )
    assert config.limits.max_batch == 7 and type(config.limits.max_batch) is int
    assert type(config.limits.rate_per_second) is float
    assert config.gateway.allowed_origins == ("https://*.example.com",)


def test_config_is_frozen() -> None:
    """A loaded configuration cannot be changed under the running gateway."""
    config = parse({"auth": HS})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits.max_batch = 1  # type: ignore[misc]


def test_secret_is_not_in_repr() -> None:
    """Logging the configuration never prints the JWT secret."""
    assert SECRET not in repr(parse({"auth": HS}))


def test_config_error_is_an_rtgateway_error() -> None:
    """ConfigError is rooted in RTGatewayError like every deliberate error."""
    assert issubclass(ConfigError, RTGatewayError)


# -- structure errors


def test_unknown_section_suggests_the_closest() -> None:
    """A misspelt section is refused, naming it and the likely intended one."""
    err = error(with_auth(gatway={}))
    assert str(err) == 'x.toml: gatway: unknown section (did you mean "gateway"?)'
    assert err.key == "gatway"


def test_unknown_section_without_suggestion() -> None:
    """A section unlike any known one is refused without a suggestion."""
    assert str(error(with_auth(zzz={}))) == "x.toml: zzz: unknown section"


def test_unknown_key_suggests_the_closest() -> None:
    """A misspelt key is refused with its dotted name and a suggestion."""
    err = error(with_auth(gateway={"listn": "tcp:1"}))
    assert str(err) == 'x.toml: gateway.listn: unknown key (did you mean "listen"?)'
    assert err.key == "gateway.listn"


def test_top_level_key_is_refused() -> None:
    """A key written before any [section] header is refused."""
    err = error(with_auth(listen="tcp:1"))
    assert str(err) == "x.toml: listen: unknown key: keys belong in a [section]"


def test_section_must_be_a_table() -> None:
    """A section given as a plain value is refused."""
    assert error(with_auth(limits=3)).problem == "expected a table, got an integer (3)"


def test_public_key_is_not_a_key_of_the_file() -> None:
    """The resolved public_key cannot be set directly; the file is the way."""
    err = error({"auth": {**HS, "public_key": "x"}})
    assert err.key == "auth.public_key"
    assert err.problem == 'unknown key (did you mean "public_key_file"?)'


# -- type errors


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("limits", "rate_burst", "abc", 'expected an integer, got a string ("abc")'),
        ("limits", "max_batch", True, "expected an integer, got a boolean (true)"),
        ("limits", "max_batch", 2.5, "expected an integer, got a float (2.5)"),
        ("limits", "max_batch", [1], "expected an integer, got a list"),
        ("heartbeat", "interval_s", "15", 'expected a number, got a string ("15")'),
        ("heartbeat", "interval_s", False, "expected a number, got a boolean (false)"),
        (
            "heartbeat",
            "interval_s",
            math.inf,
            "expected a finite number, got a float (inf)",
        ),
        (
            "heartbeat",
            "interval_s",
            math.nan,
            "expected a finite number, got a float (nan)",
        ),
        ("gateway", "listen", 8080, "expected a string, got an integer (8080)"),
        (
            "gateway",
            "permessage_deflate",
            "yes",
            'expected a boolean, got a string ("yes")',
        ),
        ("gateway", "permessage_deflate", 1, "expected a boolean, got an integer (1)"),
        ("gateway", "allowed_origins", 3, "expected a list, got an integer (3)"),
        (
            "gateway",
            "allowed_origins",
            "https://a.example",
            'expected a list, got a string ("https://a.example")',
        ),
        ("components", "extra", {"a": 1}, "expected a list, got a table"),
    ],
)
def test_wrong_type(section: str, key: str, value: Any, problem: str) -> None:
    """A value of the wrong type is refused, naming the key, the type and the value."""
    err = error(with_auth(**{section: {key: value}}))
    assert str(err) == f"x.toml: {section}.{key}: {problem}"


def test_wrong_list_item_type_names_the_index() -> None:
    """A list item of the wrong type is refused, naming its index."""
    err = error(with_auth(gateway={"allowed_origins": ["https://a.example", 3]}))
    assert (
        str(err)
        == "x.toml: gateway.allowed_origins[1]: expected a string, got an integer (3)"
    )


def test_secret_of_wrong_type_is_not_echoed() -> None:
    """A mistyped secret is refused without printing its value."""
    err = error({"auth": {"secret": 12345678901234567890123456789012}})
    assert str(err) == "x.toml: auth.secret: expected a string, got an integer"


# -- range errors

POSITIVE = [
    ("limits", name)
    for name in (
        "max_message_bytes",
        "max_batch",
        "rate_per_second",
        "rate_burst",
        "abuse_rejections",
        "abuse_window_s",
        "max_connections",
        "max_connections_per_ip",
        "handshake_timeout_s",
        "close_timeout_s",
        "send_buffer_bytes",
        "read_budget_ms",
    )
] + [("heartbeat", "interval_s"), ("heartbeat", "timeout_s")]

NON_NEGATIVE = [
    ("auth", "leeway_s"),
    ("heartbeat", "idle_timeout_s"),
    ("session", "resume_window_s"),
    ("session", "token_expiry_warning_s"),
    ("shutdown", "drain_timeout_s"),
    ("shutdown", "reconnect_jitter_ms"),
]


@pytest.mark.parametrize(("section", "key"), POSITIVE)
@pytest.mark.parametrize("value", [0, -1])
def test_positive_values(section: str, key: str, value: int) -> None:
    """Bounds, rates and timeouts must be greater than zero."""
    err = error(with_auth(**{section: {key: value}}))
    assert str(err) == f"x.toml: {section}.{key}: must be greater than 0, got {value}"


@pytest.mark.parametrize(("section", "key"), NON_NEGATIVE)
def test_non_negative_values(section: str, key: str) -> None:
    """Durations where 0 means "none" or "off" accept 0 and refuse negatives."""
    data: dict[str, dict[str, Any]] = {"auth": dict(HS)}
    data.setdefault(section, {})[key] = 0
    assert getattr(getattr(parse(data), section), key) == 0
    data[section][key] = -1
    assert str(error(data)) == f"x.toml: {section}.{key}: must be 0 or more, got -1"


# -- gateway


@pytest.mark.parametrize("path", ["ws", "/ws?x=1", "/ws#top", "/w s", ""])
def test_bad_path(path: str) -> None:
    """The WebSocket path must start with "/" and carry no query or fragment."""
    err = error(with_auth(gateway={"path": path}))
    assert err.key == "gateway.path"
    assert err.problem.startswith('expected a path starting with "/"')


@pytest.mark.parametrize("listen", ["", "8080", ":8080"])
def test_bad_listen(listen: str) -> None:
    """The listen key must look like a Twisted endpoint string."""
    assert error(with_auth(gateway={"listen": listen})).key == "gateway.listen"


@pytest.mark.parametrize(
    "listen",
    [
        "tcp:8080",
        "ssl:port=443:privateKey=key.pem:certKey=cert.pem",
        "haproxy:tcp:port=8080",
        "unix:/run/rtgw.sock",
    ],
)
def test_endpoint_strings(listen: str) -> None:
    """TCP, TLS, PROXY-protocol and Unix socket endpoint strings are accepted."""
    assert parse(with_auth(gateway={"listen": listen})).gateway.listen == listen


@pytest.mark.parametrize(
    "origin", ["https://a.example/", "a.example", "https://a.example/play"]
)
def test_bad_origin(origin: str) -> None:
    """An allowed origin is scheme://host[:port], never a URL with a path."""
    err = error(with_auth(gateway={"allowed_origins": [origin]}))
    assert err.key == "gateway.allowed_origins[0]"


@pytest.mark.parametrize("gateway_id", ["", "gw 1", "gw/1", "-gw"])
def test_bad_gateway_id(gateway_id: str) -> None:
    """A gateway id is a short name that is safe in logs and Redis keys."""
    assert error(with_auth(gateway={"id": gateway_id})).key == "gateway.id"


# -- auth: algorithms and the secret


def test_missing_secret() -> None:
    """HS256 without secret or secret_env is refused."""
    err = error({})
    assert (
        str(err)
        == "x.toml: auth.secret: missing: algorithm HS256 needs secret or secret_env"
    )
    assert err.key == "auth.secret"


def test_secret_from_environment() -> None:
    """secret_env names the variable the secret is read from, as bytes."""
    config = parse(
        {"auth": {"secret_env": "RTGW_JWT_SECRET"}}, {"RTGW_JWT_SECRET": "e" * 40}
    )
    assert config.auth.secret == b"e" * 40
    assert config.auth.secret_env == "RTGW_JWT_SECRET"


def test_secret_env_unset() -> None:
    """secret_env naming an unset variable is refused."""
    err = error({"auth": {"secret_env": "RTGW_JWT_SECRET"}})
    assert (
        str(err)
        == "x.toml: auth.secret_env: environment variable RTGW_JWT_SECRET is not set"
    )


def test_secret_env_empty() -> None:
    """secret_env naming an empty variable is refused."""
    err = error({"auth": {"secret_env": "RTGW_JWT_SECRET"}}, {"RTGW_JWT_SECRET": ""})
    assert (
        str(err)
        == "x.toml: auth.secret_env: environment variable RTGW_JWT_SECRET is empty"
    )


def test_secret_and_secret_env_together() -> None:
    """Giving both secret and secret_env is refused as ambiguous."""
    err = error({"auth": {"secret": SECRET, "secret_env": "E"}}, {"E": SECRET})
    assert str(err) == "x.toml: auth.secret: give secret or secret_env, not both"


def test_short_secret() -> None:
    """An HS256 secret shorter than 32 bytes is refused without echoing it."""
    err = error({"auth": {"secret": "x" * 31}})
    assert str(err) == (
        "x.toml: auth.secret: too short: 31 bytes, HS256 needs at least 32"
        " (RFC 7518 section 3.2)"
    )


def test_short_secret_from_environment() -> None:
    """A short secret from the environment is reported at secret_env."""
    err = error({"auth": {"secret_env": "E"}}, {"E": "short"})
    assert err.key == "auth.secret_env"
    assert err.problem.startswith("too short: 5 bytes")
    assert "short" not in err.problem.removeprefix("too short")


def test_secret_length_follows_the_strictest_algorithm() -> None:
    """With HS512 configured the secret needs 64 bytes, the hash output size."""
    err = error({"auth": {"algorithms": ["HS256", "HS512"], "secret": "x" * 48}})
    assert err.problem.startswith("too short: 48 bytes, HS512 needs at least 64")
    config = parse({"auth": {"algorithms": ["HS256", "HS512"], "secret": "x" * 64}})
    assert config.auth.algorithms == ("HS256", "HS512")


@pytest.mark.parametrize("name", ["none", "None", "NONE"])
def test_none_algorithm(name: str) -> None:
    """The unsigned "none" algorithm is refused in any spelling."""
    err = error({"auth": {**HS, "algorithms": ["HS256", name]}})
    assert (
        str(err)
        == 'x.toml: auth.algorithms[1]: "none" is never accepted: tokens must be signed'
    )


def test_unknown_algorithm() -> None:
    """An algorithm outside the supported list is refused, naming the value."""
    err = error({"auth": {**HS, "algorithms": ["XS999"]}})
    assert err.key == "auth.algorithms[0]"
    assert err.problem.startswith(
        'unknown algorithm "XS999"; expected one of HS256 HS384'
    )


def test_algorithm_case_gets_a_suggestion() -> None:
    """Algorithm names are case-sensitive; a wrong case suggests the right one."""
    err = error({"auth": {**HS, "algorithms": ["hs256"]}})
    assert err.problem.startswith('unknown algorithm "hs256" (did you mean "HS256"?)')


def test_empty_algorithms() -> None:
    """An empty algorithm list, which would refuse every token, is refused."""
    err = error({"auth": {"algorithms": []}})
    assert str(err) == "x.toml: auth.algorithms: must name at least one algorithm"


def test_unused_public_key_file_is_ignored() -> None:
    """With only HS* algorithms, public_key_file is not read and no key is kept."""
    auth = {**HS, "public_key_file": "does-not-exist.pem"}
    assert parse({"auth": auth}).auth.public_key is None


def test_unused_secret_is_ignored(tmp_path: Path) -> None:
    """With no HS* algorithm, secret_env is not resolved and no secret is kept."""
    write_public_key(tmp_path / "k.pem", ed25519.Ed25519PrivateKey.generate())
    auth = {"algorithms": ["EdDSA"], "secret_env": "UNSET", "public_key_file": "k.pem"}
    assert parse({"auth": auth}, base_dir=tmp_path).auth.secret is None


# -- auth: the public key


def test_missing_public_key_file() -> None:
    """An asymmetric algorithm without public_key_file is refused."""
    err = error({"auth": {"algorithms": ["RS256"]}})
    assert err.key == "auth.public_key_file"
    assert err.problem == "missing: algorithm RS256 needs public_key_file"


def test_unreadable_public_key_file(tmp_path: Path) -> None:
    """A public key file that cannot be read is refused with the OS error."""
    err = error(
        {"auth": {"algorithms": ["RS256"], "public_key_file": "k.pem"}},
        base_dir=tmp_path,
    )
    assert str(err) == (
        f"x.toml: auth.public_key_file: cannot read {tmp_path / 'k.pem'}: "
        "No such file or directory"
    )


def test_public_key_file_not_pem(tmp_path: Path) -> None:
    """A file that is not a PEM public key is refused."""
    (tmp_path / "k.pem").write_text("not a key\n")
    err = error(
        {"auth": {"algorithms": ["RS256"], "public_key_file": "k.pem"}},
        base_dir=tmp_path,
    )
    assert (
        str(err)
        == f"x.toml: auth.public_key_file: {tmp_path / 'k.pem'} is not a PEM public key"
    )


def test_private_key_instead_of_public(tmp_path: Path) -> None:
    """A private key is refused, saying so, since gateways only verify."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "k.pem").write_bytes(pem)
    err = error(
        {"auth": {"algorithms": ["ES256"], "public_key_file": "k.pem"}},
        base_dir=tmp_path,
    )
    assert err.problem.endswith("is not a PEM public key (it is a private key)")


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        ("RS256", lambda: rsa.generate_private_key(65537, 2048)),
        ("PS512", lambda: rsa.generate_private_key(65537, 2048)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
        ("ES384", lambda: ec.generate_private_key(ec.SECP384R1())),
        ("ES512", lambda: ec.generate_private_key(ec.SECP521R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate),
    ],
)
def test_valid_public_key(tmp_path: Path, algorithm: str, make_key: Any) -> None:
    """A PEM public key of the algorithm's type is loaded into auth.public_key."""
    path = write_public_key(tmp_path / "k.pem", make_key())
    config = parse(
        {"auth": {"algorithms": [algorithm], "public_key_file": "k.pem"}},
        base_dir=tmp_path,
    )
    assert config.auth.public_key == path.read_bytes()
    assert config.auth.public_key_file == "k.pem"
    assert config.auth.secret is None


def test_hmac_and_public_key_together(tmp_path: Path) -> None:
    """HS256 and RS256 may be accepted together, each with its own key."""
    write_public_key(tmp_path / "k.pem", rsa.generate_private_key(65537, 2048))
    auth = {
        "algorithms": ["HS256", "RS256"],
        "secret": SECRET,
        "public_key_file": "k.pem",
    }
    config = parse({"auth": auth}, base_dir=tmp_path)
    assert config.auth.secret == SECRET.encode()
    assert config.auth.public_key is not None


@pytest.mark.parametrize(
    ("algorithm", "make_key", "kind"),
    [
        ("RS256", lambda: ec.generate_private_key(ec.SECP256R1()), "EC secp256r1"),
        ("ES256", lambda: ec.generate_private_key(ec.SECP384R1()), "EC secp384r1"),
        ("ES256", lambda: rsa.generate_private_key(65537, 2048), "RSA"),
        ("EdDSA", lambda: ec.generate_private_key(ec.SECP256R1()), "EC secp256r1"),
    ],
)
def test_key_type_must_fit_algorithm(
    tmp_path: Path, algorithm: str, make_key: Any, kind: str
) -> None:
    """A key that cannot verify a configured algorithm is refused at load time."""
    path = write_public_key(tmp_path / "k.pem", make_key())
    err = error(
        {"auth": {"algorithms": [algorithm], "public_key_file": "k.pem"}},
        base_dir=tmp_path,
    )
    assert err.key == "auth.public_key_file"
    assert err.problem.startswith(
        f"{path} holds a key of type {kind}; {algorithm} needs"
    )


def test_weak_rsa_key(tmp_path: Path) -> None:
    """An RSA key under 2048 bits is refused, as PyJWT would warn about it."""
    path = write_public_key(tmp_path / "k.pem", rsa.generate_private_key(65537, 1024))
    err = error(
        {"auth": {"algorithms": ["RS256"], "public_key_file": "k.pem"}},
        base_dir=tmp_path,
    )
    assert (
        err.problem == f"{path} holds a 1024-bit RSA key; at least 2048 bits are needed"
    )


def test_public_key_file_relative_to_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative public_key_file is found next to the config file, not the cwd."""
    config_dir = tmp_path / "etc"
    (config_dir / "keys").mkdir(parents=True)
    key = write_public_key(
        config_dir / "keys" / "jwt.pem", ec.generate_private_key(ec.SECP256R1())
    )
    config_file = config_dir / "gw.toml"
    config_file.write_text(
        '[auth]\nalgorithms = ["ES256"]\npublic_key_file = "keys/jwt.pem"\n'
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc") / "gw.toml", environ={})
    assert config.auth.public_key == key.read_bytes()
    assert config.source == os.path.join("etc", "gw.toml")


def test_absolute_public_key_file(tmp_path: Path) -> None:
    """An absolute public_key_file is used as it is."""
    key = write_public_key(tmp_path / "k.pem", ec.generate_private_key(ec.SECP256R1()))
    auth = {"algorithms": ["ES256"], "public_key_file": str(key)}
    assert parse({"auth": auth}).auth.public_key == key.read_bytes()


# -- backend, logging, components


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:6379/0", "must start with redis:// or rediss://"),
        ("127.0.0.1:6379", "must start with redis:// or rediss://"),
        ("redis:///0", "has no host"),
        ("redis://h:port/0", "port must be a number from 1 to 65535"),
        ("redis://h:70000/0", "port must be a number from 1 to 65535"),
        ("redis://h:0/0", "port must be a number from 1 to 65535"),
        ("redis://h:6379/zero", 'database must be a number, got "zero"'),
        ("redis://h:6379/0?timeout=1", "must not have a query or fragment"),
    ],
)
def test_bad_redis_url(url: str, problem: str) -> None:
    """A malformed Redis URL is refused, saying which part is wrong."""
    err = error(with_auth(backend={"redis_url": url}))
    assert str(err) == f"x.toml: backend.redis_url: {problem}"


def test_redis_url_password_is_not_echoed() -> None:
    """An error in a Redis URL never prints the password it may hold."""
    err = error(with_auth(backend={"redis_url": "redis://:hunter2@h:99999/0"}))
    assert "hunter2" not in str(err)


@pytest.mark.parametrize(
    "url",
    ["redis://h", "redis://h:6380", "rediss://:pw@redis.internal:6380/2", "redis://h/"],
)
def test_good_redis_url(url: str) -> None:
    """redis:// and rediss:// URLs with optional port, password and db are accepted."""
    config = parse(with_auth(backend={"kind": "redis", "redis_url": url}))
    assert config.backend.redis_url == url


def test_bad_backend_kind() -> None:
    """An unknown backend kind is refused with the allowed ones and a suggestion."""
    err = error(with_auth(backend={"kind": "Redis"}))
    assert (
        err.problem
        == 'expected one of "memory", "redis", got "Redis" (did you mean "redis"?)'
    )


def test_bad_logging_level() -> None:
    """An unknown log level is refused, suggesting the closest one."""
    err = error(with_auth(logging={"level": "warning"}))
    assert err.key == "logging.level"
    assert err.problem.endswith('got "warning" (did you mean "warn"?)')


def test_bad_logging_format() -> None:
    """A log format other than text or json is refused."""
    assert error(with_auth(logging={"format": "xml"})).key == "logging.format"


@pytest.mark.parametrize(
    "entry", ["mygame.components", "mygame:", ":Thing", "my-game.x:Y", "a.b:C.D"]
)
def test_bad_components_entry(entry: str) -> None:
    """A component that is not "package.module:ClassName" is refused, naming it."""
    err = error(with_auth(components={"extra": ["ok.module:Fine", entry]}))
    assert err.key == "components.extra[1]"
    assert err.problem.startswith('expected "package.module:ClassName", got ')


def test_components_are_not_imported() -> None:
    """Component names are checked for syntax only; nothing is imported."""
    config = parse(with_auth(components={"extra": ["no_such_package.mod:Thing"]}))
    assert config.components.extra == ("no_such_package.mod:Thing",)


# -- files


def test_invalid_toml(tmp_path: Path) -> None:
    """A TOML syntax error is reported with its line, column and tomllib's message."""
    path = tmp_path / "bad.toml"
    path.write_text('[gateway]\npath = "/ws"\nlisten = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}: line 3, column 10: invalid TOML: Invalid value"
    assert info.value.key is None


def test_toml_error_at_end_of_document(tmp_path: Path) -> None:
    """A TOML error at the end of the file is reported as such."""
    path = tmp_path / "bad.toml"
    path.write_text('[gateway]\npath = "/ws')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}: end of document: invalid TOML: ")


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported as invalid TOML, not a traceback."""
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[gateway]\npath = "/\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}: invalid TOML: not UTF-8 (at byte offset 19)"


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config file that does not exist is reported with the OS error."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("missing.toml", environ={})
    assert (
        str(info.value)
        == "missing.toml: cannot read config file: No such file or directory"
    )
    assert info.value.key is None


def test_error_names_the_file(tmp_path: Path) -> None:
    """Errors found after parsing name the file they were loaded from."""
    path = tmp_path / "gw.toml"
    path.write_text(f'[auth]\nsecret = "{SECRET}"\n[limits]\nrate_burst = "abc"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (
        f'{path}: limits.rate_burst: expected an integer, got a string ("abc")'
    )
    assert info.value.source == str(path)


def test_load_config_reads_the_environment_given(tmp_path: Path) -> None:
    """load_config resolves secret_env from the mapping passed to it."""
    path = tmp_path / "gw.toml"
    path.write_text('[auth]\nsecret_env = "GW_SECRET"\n')
    config = load_config(path, environ={"GW_SECRET": "g" * 32})
    assert config.auth.secret == b"g" * 32


def parse_maps(tmp_path: Path, data: dict) -> Config:
    return parse_config(
        {"auth": {"secret": "x" * 32}, **data},
        source="t.toml",
        base_dir=tmp_path,
        environ={},
    )


def test_topics_and_events_parse_with_defaults(tmp_path: Path) -> None:
    """Namespaces and event types get defaults; nested and quoted names agree."""
    config = parse_maps(
        tmp_path,
        {
            "topics": {"arena": {}},
            "events": {"chat": {"message": {"version": 2}}, "game.end": {}},
        },
    )
    arena = config.topics["arena"]
    assert (arena.subscribe, arena.publish, arena.history_size) == (
        "any",
        "service",
        100,
    )
    assert config.events["chat.message"].version == 2
    assert config.events["game.end"].delivery == "reliable"


def test_event_schema_from_a_file(tmp_path: Path) -> None:
    """An event schema may be a JSON file next to the configuration."""
    (tmp_path / "move.json").write_text('{"type": "object"}')
    config = parse_maps(tmp_path, {"events": {"move": {"schema": "move.json"}}})
    assert config.events["move"].schema == {"type": "object"}


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"topics": {"a.b": {}}}, "topics.a.b", "namespace"),
        (
            {"topics": {"arena": {"publish": "all"}}},
            "topics.arena.publish",
            "expected one of",
        ),
        (
            {"topics": {"arena": {"history_size": -1}}},
            "topics.arena.history_size",
            "0 or more",
        ),
        ({"events": {"rpc.x": {"version": 1}}}, "events.rpc.x", "may not start"),
        (
            {"events": {"client.lost": {"version": 1}}},
            "events.client.lost",
            "may not start",
        ),
        (
            {"events": {"m": {"delivery": "maybe"}}},
            "events.m.delivery",
            "expected one of",
        ),
        (
            {"events": {"m": {"schema": {"type": "nope"}}}},
            "events.m.schema",
            "JSON Schema",
        ),
        (
            {"events": {"m": {"schema": "missing.json"}}},
            "events.m.schema",
            "cannot read",
        ),
        ({"events": {"m": 3}}, "events.m", "expected a table"),
    ],
)
def test_topic_and_event_errors_name_the_key(
    tmp_path: Path, data, key, problem
) -> None:
    """Bad namespaces and event types are refused, naming the key."""
    with pytest.raises(ConfigError) as info:
        parse_maps(tmp_path, data)
    assert info.value.key == key
    assert problem in info.value.problem


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"topics": {"presence": {}}}, "topics.presence"),
        ({"events": {"zone.joined": {}}}, "events.zone.joined"),
        ({"events": {"presence.changed": {}}}, "events.presence.changed"),
        (
            {"presence": {"zone_page_size": 50, "zone_page_max": 10}},
            "presence.zone_page_size",
        ),
    ],
)
def test_built_in_names_and_page_sizes(tmp_path: Path, data, key) -> None:
    """Built-in namespaces and event types cannot be redefined; page sizes agree."""
    with pytest.raises(ConfigError) as info:
        parse_maps(tmp_path, data)
    assert info.value.key == key
