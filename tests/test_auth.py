"""Tests for rtgateway.auth: every way a token is refused, and the ways it is not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.logger import capturedLogs

from rtgateway.auth import (
    MAX_TOKEN_LENGTH,
    AuthConfigError,
    AuthenticationFailed,
    Authenticator,
    Principal,
    Reason,
    token_from_request,
)
from rtgateway.wire.errors import RTGatewayError

SECRET = b"test-secret-that-is-at-least-32-bytes-long"


@dataclass(frozen=True)
class AuthSettings:
    """The attributes of the auth configuration that Authenticator reads."""

    algorithms: tuple[str, ...] = ("HS256",)
    secret: bytes | None = SECRET
    public_key: bytes | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = 0.0


def public_pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(private_key: Any) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid claim set for now, with ``overrides`` (None values removed)."""
    now = int(time.time())
    base = {"sub": "alice", "exp": now + 600, "iat": now, "nbf": now}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def hs256(payload: dict[str, Any], secret: bytes = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: Any, hmac_key: bytes | None) -> str:
    """A compact JWS built by hand, for the tokens PyJWT refuses to make.

    ``payload`` is a claim dict, or raw JSON text for claims json.dumps
    cannot express; ``hmac_key`` None leaves the signature empty.
    """
    body = payload if isinstance(payload, str) else json.dumps(payload)
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(body.encode())}"
    if hmac_key is None:
        return signing_input + "."
    digest = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(digest)}"


def refusal(authenticator: Authenticator, token: str | None) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        authenticator.authenticate(token)
    return caught.value


@pytest.fixture
def hs() -> Authenticator:
    return Authenticator(AuthSettings())


# -- absent and malformed tokens


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_missing_token(hs: Authenticator, token: str | None) -> None:
    """No token at all, or an empty one, is refused as missing_token."""
    assert refusal(hs, token).reason == Reason.MISSING_TOKEN


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d.e",
        "...",
        "!!!.eyJ9.sig",
        b64(b"[1]") + "." + b64(b"{}") + ".",
        b64(b'{"typ": "JWT"}') + "." + b64(b"{}") + ".",
        b64(b'{"alg": 256}') + "." + b64(b"{}") + ".",
        b64(b"[" * 5000) + ".e30.",
    ],
    ids=[
        "one-segment",
        "two-segments",
        "bad-base64",
        "five-segments",
        "empty-segments",
        "bad-alphabet",
        "header-not-object",
        "header-without-alg",
        "alg-not-string",
        "deeply-nested-header",
    ],
)
def test_garbage_is_malformed(hs: Authenticator, token: str) -> None:
    """Anything that is not a compact JWS with a string alg is malformed_token."""
    assert refusal(hs, token).reason == Reason.MALFORMED_TOKEN


def test_undecodable_payload_is_malformed(hs: Authenticator) -> None:
    """A correctly signed token whose payload is not a JSON object is malformed."""
    token = forge({"alg": "HS256"}, "[1, 2]", SECRET)
    assert refusal(hs, token).reason == Reason.MALFORMED_TOKEN


def test_overlong_token_is_malformed(hs: Authenticator) -> None:
    """A validly signed token over 8 KiB is refused as malformed_token."""
    token = hs256(claims(padding="x" * MAX_TOKEN_LENGTH))
    assert len(token) > MAX_TOKEN_LENGTH
    assert refusal(hs, token).reason == Reason.MALFORMED_TOKEN


def test_token_at_the_size_limit_passes(hs: Authenticator) -> None:
    """A valid token just under 8 KiB is accepted: only longer ones are cut off."""
    padding = MAX_TOKEN_LENGTH * 3 // 4
    token = hs256(claims(padding="x" * padding))
    while len(token) > MAX_TOKEN_LENGTH:
        padding -= 1
        token = hs256(claims(padding="x" * padding))
    assert len(token) > MAX_TOKEN_LENGTH - 4
    assert hs.authenticate(token).player_id == "alice"


def test_non_ascii_token_is_malformed(hs: Authenticator) -> None:
    """A token with non-ASCII characters is malformed_token."""
    token = hs256(claims())
    assert refusal(hs, token + "é").reason == Reason.MALFORMED_TOKEN


def test_unexpected_error_is_malformed_and_logged_without_text(
    hs: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unforeseen error in decoding is malformed_token; only its type is logged."""

    def explode(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("text-that-quotes-the-token")

    monkeypatch.setattr(jwt.PyJWT, "decode", explode)
    with capturedLogs() as events:
        failure = refusal(hs, hs256(claims()))
    assert failure.reason == Reason.MALFORMED_TOKEN
    assert failure.__cause__ is None and failure.__suppress_context__
    assert [e["error_type"] for e in events] == ["ZeroDivisionError"]
    assert "text-that-quotes-the-token" not in repr(events)


# -- signatures and algorithms


def test_bad_signature(hs: Authenticator) -> None:
    """A token signed with another secret is bad_signature."""
    token = hs256(claims(), secret=b"another-secret-of-at-least-32-bytes!!")
    assert refusal(hs, token).reason == Reason.BAD_SIGNATURE


def test_tampered_payload_is_bad_signature(hs: Authenticator) -> None:
    """Changing the payload of a signed token breaks its signature."""
    header, _, signature = hs256(claims()).split(".")
    payload = b64(json.dumps(claims(sub="mallory")).encode())
    token = f"{header}.{payload}.{signature}"
    assert refusal(hs, token).reason == Reason.BAD_SIGNATURE


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(alg: str) -> None:
    """An unsigned token is refused whatever the configuration lists."""
    authenticator = Authenticator(AuthSettings(algorithms=("HS256", "HS384")))
    token = forge({"alg": alg, "typ": "JWT"}, claims(), hmac_key=None)
    assert refusal(authenticator, token).reason == Reason.ALGORITHM_NOT_ALLOWED


def test_none_in_configuration_is_refused() -> None:
    """Configuring "none" stops the Authenticator from being built at all."""
    with pytest.raises(AuthConfigError):
        Authenticator(AuthSettings(algorithms=("HS256", "none")))


def test_algorithm_not_in_configuration(hs: Authenticator) -> None:
    """An HS512 token is refused when only HS256 is configured."""
    token = jwt.encode(claims(), SECRET * 2, algorithm="HS512")
    assert refusal(hs, token).reason == Reason.ALGORITHM_NOT_ALLOWED


def test_hs_rs_confusion_with_rsa_only(rsa_key: rsa.RSAPrivateKey) -> None:
    """With RS256 only, an HS256 token keyed with the public PEM is refused."""
    pem = public_pem(rsa_key)
    authenticator = Authenticator(
        AuthSettings(algorithms=("RS256",), secret=None, public_key=pem)
    )
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(), hmac_key=pem)
    assert refusal(authenticator, token).reason == Reason.ALGORITHM_NOT_ALLOWED


def test_hs_rs_confusion_with_both_families(rsa_key: rsa.RSAPrivateKey) -> None:
    """With HS256 and RS256, HS256 tokens are checked with the secret only."""
    pem = public_pem(rsa_key)
    authenticator = Authenticator(
        AuthSettings(algorithms=("HS256", "RS256"), public_key=pem)
    )
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(), hmac_key=pem)
    assert refusal(authenticator, token).reason == Reason.BAD_SIGNATURE
    rs_token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert authenticator.authenticate(rs_token).player_id == "alice"
    assert authenticator.authenticate(hs256(claims())).player_id == "alice"


def test_rs256_token_signed_by_another_key(rsa_key: rsa.RSAPrivateKey) -> None:
    """An RS256 token from a key other than the configured one is bad_signature."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    authenticator = Authenticator(
        AuthSettings(algorithms=("RS256",), secret=None, public_key=public_pem(rsa_key))
    )
    token = jwt.encode(claims(), other, algorithm="RS256")
    assert refusal(authenticator, token).reason == Reason.BAD_SIGNATURE


# -- time claims


def test_expired(hs: Authenticator) -> None:
    """A token past its exp is expired."""
    now = int(time.time())
    token = hs256(claims(exp=now - 60, iat=now - 120, nbf=now - 120))
    assert refusal(hs, token).reason == Reason.EXPIRED


def test_expired_within_leeway_passes() -> None:
    """A token expired by less than the leeway is still accepted."""
    authenticator = Authenticator(AuthSettings(leeway_s=30))
    now = int(time.time())
    token = hs256(claims(exp=now - 10, iat=now - 120, nbf=now - 120))
    principal = authenticator.authenticate(token)
    assert principal.expires_at == now - 10


def test_not_before_in_future(hs: Authenticator) -> None:
    """A token whose nbf is ahead of now is not_yet_valid."""
    token = hs256(claims(nbf=int(time.time()) + 60))
    assert refusal(hs, token).reason == Reason.NOT_YET_VALID


def test_not_before_within_leeway_passes() -> None:
    """An nbf ahead by less than the leeway (clock skew) is accepted."""
    authenticator = Authenticator(AuthSettings(leeway_s=30))
    token = hs256(claims(nbf=int(time.time()) + 10))
    assert authenticator.authenticate(token).player_id == "alice"


def test_issued_in_future(hs: Authenticator) -> None:
    """A token whose iat is ahead of now is not_yet_valid."""
    token = hs256(claims(iat=int(time.time()) + 60, nbf=None))
    assert refusal(hs, token).reason == Reason.NOT_YET_VALID


def test_missing_exp(hs: Authenticator) -> None:
    """A token without exp is missing_claim, and the message names exp."""
    failure = refusal(hs, hs256(claims(exp=None)))
    assert failure.reason == Reason.MISSING_CLAIM
    assert "exp" in failure.message


@pytest.mark.parametrize(
    "raw_exp",
    [
        '"9999999999"',
        '"1e10"',
        '"soon"',
        "true",
        "null",
        "NaN",
        "Infinity",
        "1" + "0" * 400,
        "-1",
        "[9999999999]",
    ],
)
def test_exp_of_wrong_type(hs: Authenticator, raw_exp: str) -> None:
    """An exp that is not a plain number of epoch seconds is invalid_claim.

    A numeric string in particular, which PyJWT itself would accept.
    """
    payload = json.dumps(claims(exp=None))[:-1] + f', "exp": {raw_exp}}}'
    token = forge({"alg": "HS256"}, payload, SECRET)
    failure = refusal(hs, token)
    assert failure.reason == Reason.INVALID_CLAIM
    assert "exp" in failure.message


@pytest.mark.parametrize("name", ["nbf", "iat"])
def test_nbf_and_iat_of_wrong_type(hs: Authenticator, name: str) -> None:
    """A numeric-string nbf or iat is invalid_claim too."""
    token = hs256(claims(**{name: str(int(time.time()))}))
    assert refusal(hs, token).reason == Reason.INVALID_CLAIM


def test_float_times_pass(hs: Authenticator) -> None:
    """Fractional NumericDates are valid JWT times and are accepted."""
    now = time.time()
    principal = hs.authenticate(hs256(claims(exp=now + 600.5, iat=now, nbf=now)))
    assert principal.expires_at == now + 600.5


# -- audience and issuer


def test_wrong_audience() -> None:
    """With an audience configured, a token for another one is wrong_audience."""
    authenticator = Authenticator(AuthSettings(audience="game-clients"))
    token = hs256(claims(aud="billing"))
    assert refusal(authenticator, token).reason == Reason.WRONG_AUDIENCE


def test_missing_audience() -> None:
    """With an audience configured, a token without aud is missing_claim."""
    authenticator = Authenticator(AuthSettings(audience="game-clients"))
    assert refusal(authenticator, hs256(claims())).reason == Reason.MISSING_CLAIM


def test_audience_in_list_passes() -> None:
    """A token whose aud list includes the configured audience is accepted."""
    authenticator = Authenticator(AuthSettings(audience="game-clients"))
    token = hs256(claims(aud=["billing", "game-clients"]))
    assert authenticator.authenticate(token).player_id == "alice"


def test_audience_not_configured_accepts_any_aud(hs: Authenticator) -> None:
    """Without a configured audience, a token's aud is not checked."""
    assert hs.authenticate(hs256(claims(aud="anything"))).claims["aud"] == "anything"


def test_wrong_issuer() -> None:
    """With an issuer configured, a token from another one is wrong_issuer."""
    authenticator = Authenticator(AuthSettings(issuer="https://login.example"))
    token = hs256(claims(iss="https://evil.example"))
    assert refusal(authenticator, token).reason == Reason.WRONG_ISSUER


def test_missing_issuer() -> None:
    """With an issuer configured, a token without iss is missing_claim."""
    authenticator = Authenticator(AuthSettings(issuer="https://login.example"))
    assert refusal(authenticator, hs256(claims())).reason == Reason.MISSING_CLAIM


def test_audience_and_issuer_pass() -> None:
    """A token matching the configured audience and issuer is accepted."""
    settings = AuthSettings(audience="game-clients", issuer="https://login.example")
    token = hs256(claims(aud="game-clients", iss="https://login.example"))
    assert Authenticator(settings).authenticate(token).player_id == "alice"


# -- subject, roles and other claims


def test_missing_sub(hs: Authenticator) -> None:
    """A token without sub is missing_claim, and the message names sub."""
    failure = refusal(hs, hs256(claims(sub=None)))
    assert failure.reason == Reason.MISSING_CLAIM
    assert "sub" in failure.message


@pytest.mark.parametrize(
    "sub",
    ["a" * 65, "", "alice bob", "alice/bob", "alice.b", "ålice", "alice\n", 42, ["a"]],
    ids=[
        "too-long",
        "empty",
        "space",
        "slash",
        "dot",
        "non-ascii",
        "trailing-newline",
        "number",
        "list",
    ],
)
def test_bad_subject(hs: Authenticator, sub: Any) -> None:
    """A sub that is not 1-64 of [A-Za-z0-9_-] is bad_subject."""
    assert refusal(hs, hs256(claims(sub=sub))).reason == Reason.BAD_SUBJECT


def test_null_subject_is_bad_subject(hs: Authenticator) -> None:
    """A sub present as null is bad_subject, not missing."""
    payload = json.dumps(claims(sub=None))[:-1] + ', "sub": null}'
    token = forge({"alg": "HS256"}, payload, SECRET)
    assert refusal(hs, token).reason == Reason.BAD_SUBJECT


@pytest.mark.parametrize("sub", ["a" * 64, "A", "player_01-x"])
def test_good_subject(hs: Authenticator, sub: str) -> None:
    """Subjects of the allowed alphabet, up to 64 characters, are accepted."""
    assert hs.authenticate(hs256(claims(sub=sub))).player_id == sub


@pytest.mark.parametrize(
    "roles",
    [
        "admin",
        {"admin": True},
        [1],
        ["admin", None],
        ["has space"],
        ["x" * 65],
        [f"role{i}" for i in range(33)],
    ],
    ids=[
        "string",
        "object",
        "number-item",
        "null-item",
        "bad-name",
        "long-name",
        "too-many",
    ],
)
def test_roles_not_a_list_of_names(hs: Authenticator, roles: Any) -> None:
    """A roles claim that is not a list of at most 32 role names is invalid_claim."""
    failure = refusal(hs, hs256(claims(roles=roles)))
    assert failure.reason == Reason.INVALID_CLAIM
    assert "roles" in failure.message


def test_thirty_two_roles_pass(hs: Authenticator) -> None:
    """Up to 32 roles are accepted, duplicates folded."""
    roles = [f"role.{i}" for i in range(31)] + ["role.0"]
    principal = hs.authenticate(hs256(claims(roles=roles)))
    assert principal.roles == frozenset(roles)


def test_jti_not_a_string(hs: Authenticator) -> None:
    """A jti that is not a string is invalid_claim."""
    assert refusal(hs, hs256(claims(jti=7))).reason == Reason.INVALID_CLAIM


# -- accepted tokens


def test_valid_hs256(hs: Authenticator) -> None:
    """A valid HS256 token gives the player, roles, expiry and read-only claims."""
    payload = claims(roles=["admin", "service"], level=3)
    principal = hs.authenticate(hs256(payload))
    assert principal == Principal(
        player_id="alice",
        roles=frozenset({"admin", "service"}),
        expires_at=float(payload["exp"]),
        claims={},
    )
    assert principal.has_role("admin") and not principal.has_role("player")
    assert principal.claims["level"] == 3
    with pytest.raises(TypeError):
        principal.claims["level"] = 4  # type: ignore[index]


def test_no_roles_claim_means_no_roles(hs: Authenticator) -> None:
    """Without a roles claim, the principal has no roles."""
    assert hs.authenticate(hs256(claims())).roles == frozenset()


def test_principal_repr_hides_claims(hs: Authenticator) -> None:
    """Logging a principal does not log the token's other claims."""
    principal = hs.authenticate(hs256(claims(email="alice@example.com")))
    assert "alice@example.com" not in repr(principal)


@pytest.mark.parametrize("algorithm", ["RS256", "PS256"])
def test_valid_rsa_token(rsa_key: rsa.RSAPrivateKey, algorithm: str) -> None:
    """RS256 and PS256 tokens verify with the configured RSA public key."""
    settings = AuthSettings(
        algorithms=(algorithm,), secret=None, public_key=public_pem(rsa_key)
    )
    token = jwt.encode(claims(roles=["service"]), rsa_key, algorithm=algorithm)
    principal = Authenticator(settings).authenticate(token)
    assert principal.player_id == "alice" and principal.has_role("service")


def test_valid_es256(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """An ES256 token verifies with the configured P-256 public key."""
    settings = AuthSettings(
        algorithms=("ES256",), secret=None, public_key=public_pem(ec_key)
    )
    token = jwt.encode(claims(), ec_key, algorithm="ES256")
    assert Authenticator(settings).authenticate(token).player_id == "alice"


def test_valid_eddsa(ed_key: ed25519.Ed25519PrivateKey) -> None:
    """An EdDSA (Ed25519) token verifies with the configured public key."""
    settings = AuthSettings(
        algorithms=("EdDSA",), secret=None, public_key=public_pem(ed_key)
    )
    token = jwt.encode(claims(), ed_key, algorithm="EdDSA")
    assert Authenticator(settings).authenticate(token).player_id == "alice"


# -- configuration the Authenticator cannot use


@pytest.mark.parametrize(
    "overrides",
    [
        {"algorithms": ()},
        {"algorithms": ("HS999",)},
        {"secret": None},
        {"secret": b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"},
        {"algorithms": ("RS256",), "public_key": None},
        {"algorithms": ("RS256",), "public_key": b"not a pem"},
    ],
    ids=[
        "no-algorithm",
        "unknown-algorithm",
        "hs-without-secret",
        "pem-as-secret",
        "rs-without-key",
        "rs-garbage-key",
    ],
)
def test_unusable_configuration(overrides: dict[str, Any]) -> None:
    """A configuration that cannot verify anything fails when built."""
    with pytest.raises(AuthConfigError):
        Authenticator(replace(AuthSettings(), **overrides))


@pytest.mark.parametrize(
    ("algorithm", "curve"),
    [("RS256", ec.SECP256R1()), ("EdDSA", ec.SECP256R1()), ("ES256", ec.SECP384R1())],
)
def test_public_key_of_wrong_family_or_curve(
    algorithm: str, curve: ec.EllipticCurve
) -> None:
    """A public key the algorithm cannot verify with fails when built."""
    key = ec.generate_private_key(curve)
    settings = AuthSettings(algorithms=(algorithm,), public_key=public_pem(key))
    with pytest.raises(AuthConfigError, match=algorithm):
        Authenticator(settings)


def test_private_key_as_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    """A private key PEM is not accepted where the public key belongs."""
    settings = AuthSettings(algorithms=("RS256",), public_key=private_pem(rsa_key))
    with pytest.raises(AuthConfigError):
        Authenticator(settings)


# -- the failure itself


def failing_tokens() -> list[str]:
    now = int(time.time())
    return [
        "x" * (MAX_TOKEN_LENGTH + 1),
        "definitely.not.ajwt",
        hs256(claims(), secret=b"another-secret-of-at-least-32-bytes!!"),
        hs256(claims(exp=now - 60)),
        hs256(claims(sub="bad sub")),
        hs256(claims(roles="admin")),
        forge({"alg": "none"}, claims(), None),
        forge({"alg": "HS256"}, json.dumps(claims())[:-1] + ', "exp": "x"}', SECRET),
    ]


@pytest.mark.parametrize("token", failing_tokens())
def test_failure_never_contains_the_token(hs: Authenticator, token: str) -> None:
    """Neither the message, the data nor the repr of a failure quotes the token."""
    failure = refusal(hs, token)
    shown = f"{failure} {failure!r} {failure.to_error_object()}"
    assert token not in shown
    for segment in token.split("."):
        if len(segment) >= 8:
            assert segment not in shown
    assert failure.__cause__ is None


def test_failure_is_typed() -> None:
    """AuthenticationFailed is an RTGatewayError carrying its reason as data."""
    failure = AuthenticationFailed(Reason.EXPIRED)
    assert isinstance(failure, RTGatewayError)
    assert failure.reason == "expired"
    assert failure.to_error_object() == {
        "code": -32001,
        "message": "the token has expired",
        "data": {"reason": "expired"},
    }


def test_reasons_are_label_safe() -> None:
    """Every reason is a short snake_case code, usable as a Prometheus label."""
    for reason in Reason:
        assert reason.value.replace("_", "").isalpha() and reason.value.islower()
        assert AuthenticationFailed(reason).message


# -- finding the token in the request


@pytest.mark.parametrize(
    ("authorization", "args", "expected"),
    [
        (b"Bearer abc.def.ghi", {}, "abc.def.ghi"),
        ("Bearer abc.def.ghi", {}, "abc.def.ghi"),
        (b"bearer abc.def.ghi", {}, "abc.def.ghi"),
        (b"BEARER   abc.def.ghi  ", {}, "abc.def.ghi"),
        (None, {b"access_token": [b"q.q.q"]}, "q.q.q"),
        (None, {"access_token": ["q.q.q"]}, "q.q.q"),
        (b"Bearer h.h.h", {b"access_token": [b"q.q.q"]}, "h.h.h"),
        (b"Basic dXNlcjpwYXNz", {b"access_token": [b"q.q.q"]}, "q.q.q"),
        ("Basic dXNlcjpwYXNz", {"access_token": ["q.q.q"]}, "q.q.q"),
        (b"Bearer", {b"access_token": [b"q.q.q"]}, "q.q.q"),
        (None, {b"access_token": [b"first", b"second"]}, "first"),
        (b"Basic dXNlcjpwYXNz", {}, None),
        (None, {}, None),
        (b"", {b"other": [b"x"]}, None),
        (None, {b"access_token": [b""]}, None),
        (None, {b"access_token": []}, None),
    ],
    ids=[
        "header-bytes",
        "header-str",
        "lowercase-bearer",
        "uppercase-bearer-extra-spaces",
        "query-bytes",
        "query-str",
        "header-wins-over-query",
        "basic-falls-back-to-query-bytes",
        "basic-falls-back-to-query-str",
        "bearer-without-token-falls-back",
        "first-query-value",
        "basic-without-query",
        "nothing",
        "empty-header-other-args",
        "empty-query-value",
        "no-query-value",
    ],
)
def test_token_from_request(
    authorization: bytes | str | None, args: Any, expected: str | None
) -> None:
    """The Bearer header comes first, else the first access_token value."""
    assert token_from_request(authorization, args) == expected
