"""Tests for rtgateway.tokens: minted tokens pass the gateway's check, bad
requests fail early, and the command line prints one line either way."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rtgateway.auth import MAX_TOKEN_LENGTH, Authenticator
from rtgateway.tokens import MintError, main, mint_token

SECRET = "0123456789abcdef0123456789abcdef-dev"


@dataclass(frozen=True)
class AuthSettings:
    """The attributes of the auth configuration that tokens and auth read."""

    algorithms: tuple[str, ...] = ("HS256",)
    secret: bytes | None = SECRET.encode()
    public_key: bytes | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = 0.0


def private_pem(private_key: Any) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def unverified(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# -- mint_token


def test_hs256_token_is_accepted_by_the_gateway() -> None:
    """A minted HS256 token passes the Authenticator with its player and roles."""
    settings = AuthSettings()
    token = mint_token(settings, "alice", roles=["admin", "service"])
    principal = Authenticator(settings).authenticate(token)
    assert principal.player_id == "alice"
    assert principal.roles == frozenset({"admin", "service"})
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_times_are_whole_seconds() -> None:
    """iat and nbf are now rounded down; exp is the ttl later, rounded up."""
    token = mint_token(AuthSettings(), "alice", ttl_s=60.2, now=1000.7)
    claims = unverified(token)
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1000, 1000, 1061)


def test_audience_and_issuer_come_from_the_configuration() -> None:
    """The configured aud and iss are set, so the gateway's checks pass."""
    settings = AuthSettings(audience="game-clients", issuer="https://login.example")
    token = mint_token(settings, "alice")
    claims = unverified(token)
    assert (claims["aud"], claims["iss"]) == ("game-clients", "https://login.example")
    assert Authenticator(settings).authenticate(token).player_id == "alice"


def test_roles_only_when_given_and_deduplicated() -> None:
    """No roles means no roles claim; repeated roles are listed once, in order."""
    assert "roles" not in unverified(mint_token(AuthSettings(), "alice"))
    token = mint_token(AuthSettings(), "alice", roles=["b", "a", "b"])
    assert unverified(token)["roles"] == ["b", "a"]


def test_extra_claims_are_added() -> None:
    """extra_claims appear in the token beside the standard ones."""
    token = mint_token(AuthSettings(), "alice", extra_claims={"zone": "north"})
    assert unverified(token)["zone"] == "north"


@pytest.mark.parametrize("name", ["sub", "exp", "iat", "nbf", "aud", "iss", "roles"])
def test_extra_claims_cannot_override_standard_ones(name: str) -> None:
    """extra_claims may not set a claim mint_token sets itself."""
    with pytest.raises(MintError, match=name):
        mint_token(AuthSettings(), "alice", extra_claims={name: "x"})


@pytest.mark.parametrize("sub", ["", "a" * 65, "alice bob", "ålice", 7])
def test_bad_subject_is_refused(sub: Any) -> None:
    """A sub the gateway would refuse is refused here already."""
    with pytest.raises(MintError, match="sub"):
        mint_token(AuthSettings(), sub)


def test_bad_roles_are_refused() -> None:
    """A role name the gateway would refuse, or more than 32 roles, is refused."""
    with pytest.raises(MintError, match="role"):
        mint_token(AuthSettings(), "alice", roles=["has space"])
    with pytest.raises(MintError, match="roles"):
        mint_token(AuthSettings(), "alice", roles=[f"r{i}" for i in range(33)])


@pytest.mark.parametrize("ttl", [0, -5, math.nan, math.inf])
def test_bad_ttl_is_refused(ttl: float) -> None:
    """The lifetime must be a positive, finite number of seconds."""
    with pytest.raises(MintError, match="ttl"):
        mint_token(AuthSettings(), "alice", ttl_s=ttl)


def test_oversized_token_is_refused() -> None:
    """A token over the gateway's 8 KiB limit is refused."""
    with pytest.raises(MintError, match=str(MAX_TOKEN_LENGTH)):
        mint_token(AuthSettings(), "alice", extra_claims={"pad": "x" * 8000})


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        (
            "RS256",
            lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate),
    ],
)
def test_asymmetric_token_is_accepted_by_the_gateway(
    algorithm: str, make_key: Any
) -> None:
    """A token signed with the private key passes the check with its public key."""
    key = make_key()
    settings = AuthSettings(
        algorithms=(algorithm,), secret=None, public_key=public_pem(key)
    )
    token = mint_token(settings, "bob", private_key=private_pem(key))
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert Authenticator(settings).authenticate(token).player_id == "bob"


def test_default_algorithm_follows_the_key_material(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    """With HS256 and ES256 configured, a private key picks ES256, none HS256."""
    settings = AuthSettings(
        algorithms=("HS256", "ES256"), public_key=public_pem(ec_key)
    )
    with_key = mint_token(settings, "alice", private_key=private_pem(ec_key))
    assert jwt.get_unverified_header(with_key)["alg"] == "ES256"
    assert jwt.get_unverified_header(mint_token(settings, "alice"))["alg"] == "HS256"


@pytest.mark.parametrize(
    ("settings", "kwargs", "match"),
    [
        (AuthSettings(), {"algorithm": "HS512"}, "not in auth.algorithms"),
        (AuthSettings(), {"private_key": b"pem"}, "no asymmetric algorithm"),
        (
            AuthSettings(),
            {"algorithm": "HS256", "private_key": b"pem"},
            "not a private key",
        ),
        (AuthSettings(secret=None), {}, "needs auth.secret"),
        (AuthSettings(algorithms=("ES256",)), {}, "no HS\\* algorithm"),
        (AuthSettings(algorithms=("ES256",)), {"algorithm": "ES256"}, "private key"),
        (
            AuthSettings(algorithms=("ES256",)),
            {"private_key": b"not a pem"},
            "cannot make the ES256 token",
        ),
    ],
    ids=[
        "algorithm-not-configured",
        "private-key-without-asymmetric-algorithm",
        "private-key-for-hs",
        "hs-without-secret",
        "no-hs-without-private-key",
        "asymmetric-without-private-key",
        "garbage-private-key",
    ],
)
def test_unusable_key_material(
    settings: AuthSettings, kwargs: dict[str, Any], match: str
) -> None:
    """Missing, misplaced or unusable key material is a MintError, not a crash."""
    with pytest.raises(MintError, match=match):
        mint_token(settings, "alice", **kwargs)


def test_private_key_of_the_wrong_family() -> None:
    """An EC private key offered for RS256 is a MintError."""
    key = ec.generate_private_key(ec.SECP256R1())
    settings = AuthSettings(algorithms=("RS256",))
    with pytest.raises(MintError, match="cannot make the RS256 token"):
        mint_token(settings, "alice", private_key=private_pem(key))


def test_private_key_of_another_pair(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """A private key that is not the configured public key's pair is refused."""
    other = ec.generate_private_key(ec.SECP256R1())
    settings = AuthSettings(algorithms=("ES256",), public_key=public_pem(ec_key))
    with pytest.raises(MintError, match="not its pair"):
        mint_token(settings, "alice", private_key=private_pem(other))


# -- the command line


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "rtgateway.toml"
    path.write_text(f'[auth]\nsecret = "{SECRET}"\n')
    return path


@pytest.mark.parametrize("command", [["token"], []], ids=["python-m", "console-script"])
def test_cli_prints_one_token(
    config_file: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """The token command (word optional) prints one verifiable JWT line."""
    argv = [*command, "--config", str(config_file), "--sub", "alice"]
    status = main([*argv, "--roles", "admin, service", "--ttl", "120"])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert out.count("\n") == 1
    claims = jwt.decode(out.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["admin", "service"]
    assert claims["exp"] - claims["iat"] == 120


def test_cli_with_private_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ec_key: Any
) -> None:
    """--private-key-file signs with the configured asymmetric algorithm."""
    (tmp_path / "public.pem").write_bytes(public_pem(ec_key))
    (tmp_path / "private.pem").write_bytes(private_pem(ec_key))
    config = tmp_path / "rtgateway.toml"
    config.write_text(
        '[auth]\nalgorithms = ["ES256"]\npublic_key_file = "public.pem"\n'
    )
    argv = ["--config", str(config), "--sub", "bob"]
    status = main([*argv, "--private-key-file", str(tmp_path / "private.pem")])
    out, _ = capsys.readouterr()
    assert status == 0
    claims = jwt.decode(out.strip(), public_pem(ec_key), algorithms=["ES256"])
    assert claims["sub"] == "bob"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--sub", "bad sub"], "is not a player id"),
        (["--sub", "alice", "--ttl", "-1"], "ttl"),
        (["--sub", "alice", "--private-key-file", "/nonexistent/k.pem"], "cannot read"),
    ],
    ids=["bad-sub", "bad-ttl", "missing-key-file"],
)
def test_cli_errors_are_one_line(
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: str,
) -> None:
    """A bad request exits 2 with one line on stderr and nothing on stdout."""
    status = main(["token", "--config", str(config_file), *extra])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("rtgateway token: ")
    assert expected in err


def test_cli_bad_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config the loader refuses exits 2 with its one-line message."""
    config = tmp_path / "rtgateway.toml"
    config.write_text('[auth]\nsecret = "too short"\n')
    status = main(["--config", str(config), "--sub", "alice"])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and "auth.secret" in err


def test_cli_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """-h first shows the commands, with token among them."""
    with pytest.raises(SystemExit) as exit_:
        main(["-h"])
    assert exit_.value.code == 0
    assert "token" in capsys.readouterr().out


def test_python_m_rtgateway(config_file: Path) -> None:
    """``python -m rtgateway token`` runs the same command in a real process."""
    argv = ["token", "--config", str(config_file), "--sub", "carol"]
    result = subprocess.run(
        [sys.executable, "-m", "rtgateway", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert (
        jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])["sub"]
        == "carol"
    )
