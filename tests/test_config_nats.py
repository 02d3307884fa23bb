"""The ``[backend]`` keys of the NATS bus: URLs, credentials from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtgateway.config import ConfigError
from rtgateway.config.loader import parse_config

SECRET = "s" * 32


def parse(backend: dict, environ: dict | None = None, base_dir: Path = Path(".")):
    data = {"auth": {"secret": SECRET}, "backend": backend}
    config = parse_config(
        data, source="x.toml", base_dir=base_dir, environ=environ or {}
    )
    return config.backend


def error(backend: dict, environ: dict | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(backend, environ)
    return str(caught.value)


def test_default_is_the_redis_bus():
    """Without a bus key the cluster keeps Redis pub/sub."""
    assert parse({"kind": "redis"}).bus == "redis"


def test_nats_needs_redis():
    """bus = "nats" with kind = "memory" is refused, naming the key."""
    assert (
        error({"bus": "nats"})
        == 'x.toml: backend.bus: bus = "nats" needs kind = "redis"'
    )


def test_one_url_or_a_list():
    """nats_url takes one URL or a list of them."""
    one = parse({"kind": "redis", "bus": "nats", "nats_url": "nats://n1:4222"})
    assert one.nats_url == ("nats://n1:4222",)
    many = parse(
        {"kind": "redis", "bus": "nats", "nats_url": ["nats://n1", "tls://n2:4443"]}
    )
    assert many.nats_url == ("nats://n1", "tls://n2:4443")


def test_bad_url_is_refused_without_echo():
    """A URL of another scheme is refused, and never echoed (it may hold a token)."""
    message = error({"kind": "redis", "bus": "nats", "nats_url": "http://tok@n1"})
    assert message == "x.toml: backend.nats_url[0]: must start with nats:// or tls://"


def test_token_from_the_environment():
    """The token is read from the named variable, and never shown in the repr."""
    backend = parse(
        {"kind": "redis", "bus": "nats", "nats_token_env": "NATS_TOKEN"},
        {"NATS_TOKEN": "hunter2"},
    )
    assert backend.nats_token == "hunter2"
    assert "hunter2" not in repr(backend)


def test_user_and_password_from_the_environment():
    """User and password come from their variables, and go together."""
    backend = parse(
        {
            "kind": "redis",
            "bus": "nats",
            "nats_user_env": "NU",
            "nats_password_env": "NP",
        },
        {"NU": "gw", "NP": "pw"},
    )
    assert (backend.nats_user, backend.nats_password) == ("gw", "pw")
    assert error(
        {"kind": "redis", "bus": "nats", "nats_user_env": "NU"}, {"NU": "x"}
    ) == ("x.toml: backend.nats_user_env: needs nats_password_env, and back")


def test_unset_variable_is_refused():
    """A credential variable named but not set refuses the file."""
    assert error({"kind": "redis", "bus": "nats", "nats_token_env": "NOPE"}) == (
        "x.toml: backend.nats_token_env: environment variable NOPE is not set or empty"
    )


def test_tls_ca_relative_to_the_file(tmp_path):
    """nats_tls_ca is found next to the configuration file; a missing one is refused."""
    (tmp_path / "ca.pem").write_text("x")
    backend = parse(
        {"kind": "redis", "bus": "nats", "nats_tls_ca": "ca.pem"}, base_dir=tmp_path
    )
    assert backend.nats_tls_ca == str(tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match=r"backend\.nats_tls_ca: cannot read"):
        parse(
            {"kind": "redis", "bus": "nats", "nats_tls_ca": "gone.pem"},
            base_dir=tmp_path,
        )
