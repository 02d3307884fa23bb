"""Authentication: the JWT presented at the upgrade becomes a :class:`Principal`.

PROTOCOL.md section 2 is the contract. A token is accepted only when it is
signed with one of the configured algorithms (``none`` never) and the key of
that algorithm's family: HS* tokens are checked with the shared secret and
nothing else, RS*/PS*/ES*/EdDSA tokens with the public key and nothing else,
so a public key can never be turned into an HMAC secret (the HS/RS
confusion attack). Keys are prepared once, when the :class:`Authenticator`
is built, because every connection attempt (resume included) pays for this
check.

Every refusal is an :class:`AuthenticationFailed` whose ``reason`` is one of
the short codes of :class:`Reason`: a bounded set, fit for a metrics label
and for the 401 body. No message ever holds the token or a claim's value,
which an attacker chooses and a log would keep.

Time comes from an injected clock (the reactor's, by default the wall
clock), not from PyJWT: ``exp``, ``nbf`` and ``iat`` are checked here, so
that a token's expiry and the gateway's own timers (``session.expiring``,
the 4001 close) agree, in production and on a test's ``task.Clock``.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm, get_default_algorithms
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rtgateway.wire.errors import Forbidden, RTGatewayError

#: Longer tokens are refused before any parsing: no honest token comes near
#: it, and it bounds the work an anonymous request can cause.
MAX_TOKEN_LENGTH = 8192
#: The player id; it appears in topic names, so it is kept to a safe alphabet.
SUBJECT_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: One role name in the optional ``roles`` claim.
ROLE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_ROLES = 32

# Times past the year 9999 are not dates but mistakes (or overflow attempts:
# a float() of a huge JSON integer raises).
_LATEST_TIME = 253_402_300_800


class Reason(StrEnum):
    """Why a token was refused: a metrics label and the 401 body's ``reason``."""

    MISSING_TOKEN = "missing_token"
    MALFORMED_TOKEN = "malformed_token"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ISSUER = "wrong_issuer"
    MISSING_CLAIM = "missing_claim"
    INVALID_CLAIM = "invalid_claim"
    BAD_SUBJECT = "bad_subject"


_MESSAGES = {
    Reason.MISSING_TOKEN: (
        "no token: send Authorization: Bearer <jwt> or the access_token query parameter"
    ),
    Reason.MALFORMED_TOKEN: "the token is not a well-formed signed JWT",
    Reason.ALGORITHM_NOT_ALLOWED: "the token's signature algorithm is not accepted",
    Reason.BAD_SIGNATURE: "the token's signature does not verify",
    Reason.EXPIRED: "the token has expired",
    Reason.NOT_YET_VALID: "the token is not valid yet (nbf or iat is in the future)",
    Reason.WRONG_AUDIENCE: "the token is meant for another audience (aud)",
    Reason.WRONG_ISSUER: "the token comes from another issuer (iss)",
    Reason.MISSING_CLAIM: "the token lacks a required claim",
    Reason.INVALID_CLAIM: "a claim of the token has the wrong type or value",
    Reason.BAD_SUBJECT: (
        "the sub claim must be a string of 1 to 64 letters, digits, '_' or '-'"
    ),
}


class AuthenticationFailed(RTGatewayError):
    """The token was refused; ``reason`` says why, in one of :class:`Reason`.

    At the upgrade this becomes an HTTP 401. The only place it can reach a
    client as a JSON-RPC error is a token refresh, where the protocol's
    nearest code is -32001 ("not allowed"); ``data.reason`` carries the code.
    """

    code = Forbidden.code

    def __init__(self, reason: Reason, message: str | None = None) -> None:
        super().__init__(message or _MESSAGES[reason], {"reason": str(reason)})
        self.reason: str = reason


class AuthConfigError(RTGatewayError):
    """The auth configuration cannot verify anything (a missing or unusable key).

    :func:`rtgateway.config.load_config` checks the same things with the
    file's name and key attached; this is the backstop for configuration
    objects built in code.
    """


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token says the connection belongs to.

    Equality and hashing use the player, the roles and the expiry; ``claims``
    (every verified claim, in a read-only view) rides along and stays out of
    ``repr`` so that logging a principal does not log what the token carries.
    """

    player_id: str
    roles: frozenset[str]
    expires_at: float
    claims: Mapping[str, Any] = field(compare=False, repr=False)

    def has_role(self, name: str) -> bool:
        """True when the token granted role ``name`` (e.g. ``service``, ``admin``)."""
        return name in self.roles


class Authenticator:
    """Verifies tokens against one auth configuration.

    ``auth_config`` needs ``algorithms``, ``secret`` (HS*), ``public_key``
    (PEM, for the others), ``audience``, ``issuer`` and ``leeway_s``. When no
    audience is configured, a token's ``aud`` is not checked at all: the
    operator has said the gateway does not care whom a token was meant for
    (PyJWT would otherwise refuse every token that names an audience).
    """

    log = Logger()

    def __init__(self, auth_config: Any, clock: IReactorTime | None = None) -> None:
        self._keys = _verification_keys(auth_config)
        self._audience: str | None = auth_config.audience
        self._issuer: str | None = auth_config.issuer
        self._leeway = float(auth_config.leeway_s)
        self._now = clock.seconds if clock is not None else time.time
        self._jwt = _GatewayJWT(
            options={
                "require": ["exp", "sub"],
                "verify_aud": auth_config.audience is not None,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            }
        )
        algorithms = get_default_algorithms()
        for name, key in self._keys.items():
            if isinstance(algorithms[name], HMACAlgorithm):
                self._jwt.trust_prepared_hmac_key(name, key)

    def authenticate(self, token: str | None) -> Principal:
        """The principal of a valid ``token``; :class:`AuthenticationFailed` if not."""
        if not token:
            raise AuthenticationFailed(Reason.MISSING_TOKEN)
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise AuthenticationFailed(Reason.MALFORMED_TOKEN)
        algorithm = _header_algorithm(token)
        key = self._keys.get(algorithm)
        if key is None:
            raise AuthenticationFailed(Reason.ALGORITHM_NOT_ALLOWED)
        try:
            claims = self._jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
            )
        except AuthenticationFailed:
            raise
        except jwt.PyJWTError as error:
            raise _failure_for(error) from None
        except Exception as error:
            # Only the type is logged: an exception's text may quote the input.
            self.log.warn(
                "unexpected {error_type} while verifying a token; refused as malformed",
                error_type=type(error).__name__,
            )
            raise AuthenticationFailed(Reason.MALFORMED_TOKEN) from None
        self._check_times(claims)
        return Principal(
            player_id=claims["sub"],
            roles=frozenset(claims.get("roles", ())),
            expires_at=float(claims["exp"]),
            claims=MappingProxyType(claims),
        )

    def _check_times(self, claims: dict[str, Any]) -> None:
        """exp, nbf and iat against the clock, with the configured leeway."""
        now, leeway = self._now(), self._leeway
        if claims["exp"] <= now - leeway:
            raise AuthenticationFailed(Reason.EXPIRED)
        if (
            claims.get("nbf", now) > now + leeway
            or claims.get("iat", now) > now + leeway
        ):
            raise AuthenticationFailed(Reason.NOT_YET_VALID)


def token_from_request(
    authorization: bytes | str | None,
    query_args: Mapping[bytes, list[bytes]] | Mapping[str, list[str]],
) -> str | None:
    """The token of an upgrade request, or None when it carries none.

    ``Authorization: Bearer <jwt>`` (scheme in any case) comes first; any
    other Authorization header is ignored, so that the ``access_token`` query
    parameter (what browsers must use) still counts. ``query_args`` is
    twisted.web's ``request.args`` (bytes) or a str-keyed equivalent. An
    empty token counts as none.
    """
    if authorization:
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        parts = authorization.split(None, 1)
        if len(parts) == 2 and parts[0].lower() == "bearer":
            return parts[1].strip()
    args: Mapping[Any, Sequence[Any]] = query_args
    values = args.get(b"access_token") or args.get("access_token")
    if not values or not values[0]:
        return None
    first = values[0]
    return first.decode("latin-1") if isinstance(first, bytes) else first


def _header_algorithm(token: str) -> str:
    """The ``alg`` named by the token's header, nothing verified.

    It only selects the key: PyJWT then decodes the header again, strictly,
    and is told to accept exactly this algorithm. Reading the first segment
    here, instead of with ``jwt.get_unverified_header`` (which decodes and
    checks all three segments, payload included), saves a fifth of the cost
    of an HS256 check.
    """
    if token.count(".") != 2:
        raise AuthenticationFailed(Reason.MALFORMED_TOKEN)
    segment = token[: token.index(".")]
    try:
        header = json.loads(
            base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        )
    except (ValueError, RecursionError):  # binascii.Error is a ValueError
        raise AuthenticationFailed(Reason.MALFORMED_TOKEN) from None
    algorithm = header.get("alg") if isinstance(header, dict) else None
    if not isinstance(algorithm, str):
        raise AuthenticationFailed(Reason.MALFORMED_TOKEN)
    return algorithm


class _GatewayJWT(jwt.PyJWT):
    """PyJWT plus the gateway's claim checks.

    They run in the hook PyJWT provides for subclasses, after the signature is
    verified and before PyJWT's own claim checks, which would accept a
    numeric string as ``exp`` and report a non-numeric one as a decoding error.
    """

    def _decode_payload(self, decoded: dict[str, Any]) -> Any:
        payload = super()._decode_payload(decoded)
        _check_claims(payload)
        return payload

    def trust_prepared_hmac_key(self, name: str, key: bytes) -> None:
        """Verify HS* algorithm ``name`` with ``key``, prepared once already."""
        algorithm = self._jws.get_algorithm_by_name(name)
        if not isinstance(algorithm, HMACAlgorithm):
            raise ValueError(f"{name} is not an HMAC algorithm")
        hash_alg = algorithm.hash_alg
        self._jws.unregister_algorithm(name)
        self._jws.register_algorithm(name, _PreparedHMAC(hash_alg, key))


class _PreparedHMAC(HMACAlgorithm):
    """An HMAC algorithm that does not prepare its own secret again.

    PyJWT prepares the key anew for every token it verifies. For HMAC that
    means trying the secret as PEM, SSH and DER keys (the last through two
    cryptography parsers) and as JSON, to refuse a public key used as a
    secret: a tenth of the CPU of opening a connection. That check was made
    once, by :func:`_verification_keys`; the very bytes object it returned
    goes through untouched, and any other key is prepared as PyJWT would.
    """

    def __init__(self, hash_alg: Any, prepared: bytes) -> None:
        super().__init__(hash_alg)
        self._prepared = prepared

    def prepare_key(self, key: str | bytes) -> bytes:
        if key is self._prepared:
            return self._prepared
        return super().prepare_key(key)


def _check_claims(payload: dict[str, Any]) -> None:
    """Types and formats of the claims the gateway relies on, when present."""
    for name in ("exp", "nbf", "iat"):
        if name in payload and not _is_time(payload[name]):
            raise AuthenticationFailed(
                Reason.INVALID_CLAIM,
                f"the {name} claim must be a number of seconds since the epoch",
            )
    if "sub" in payload and not (
        isinstance(payload["sub"], str) and SUBJECT_PATTERN.fullmatch(payload["sub"])
    ):
        raise AuthenticationFailed(Reason.BAD_SUBJECT)
    if "roles" in payload and not _are_roles(payload["roles"]):
        raise AuthenticationFailed(
            Reason.INVALID_CLAIM,
            f"the roles claim must be a list of at most {MAX_ROLES} names of 1 to "
            "64 letters, digits, '_', '.' or '-'",
        )
    if "jti" in payload and not isinstance(payload["jti"], str):
        raise AuthenticationFailed(
            Reason.INVALID_CLAIM, "the jti claim must be a string"
        )


def _is_time(value: Any) -> bool:
    # type() rather than isinstance(): bool is an int, and JSON gives exact types.
    return type(value) in (int, float) and 0 <= value < _LATEST_TIME


def _are_roles(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) <= MAX_ROLES
        and all(
            isinstance(role, str) and ROLE_PATTERN.fullmatch(role) for role in value
        )
    )


# Looked up along the exception's MRO, so the most specific class wins;
# PyJWTError takes the rest (undecodable segments, bad headers) as malformed.
_REASONS: dict[type[Exception], Reason] = {
    jwt.InvalidSignatureError: Reason.BAD_SIGNATURE,
    jwt.InvalidAlgorithmError: Reason.ALGORITHM_NOT_ALLOWED,
    jwt.ExpiredSignatureError: Reason.EXPIRED,
    jwt.ImmatureSignatureError: Reason.NOT_YET_VALID,
    jwt.InvalidAudienceError: Reason.WRONG_AUDIENCE,
    jwt.InvalidIssuerError: Reason.WRONG_ISSUER,
    jwt.InvalidIssuedAtError: Reason.INVALID_CLAIM,
    jwt.PyJWTError: Reason.MALFORMED_TOKEN,
}


def _failure_for(error: jwt.PyJWTError) -> AuthenticationFailed:
    if isinstance(error, jwt.MissingRequiredClaimError):
        # The claim's name is ours (the required list, aud or iss), not the token's.
        return AuthenticationFailed(
            Reason.MISSING_CLAIM, f"the token has no {error.claim} claim"
        )
    return AuthenticationFailed(
        next(_REASONS[cls] for cls in type(error).__mro__ if cls in _REASONS)
    )


def _verification_keys(auth_config: Any) -> dict[str, Any]:
    """Each configured algorithm's key, prepared once: the secret for HS*, the
    parsed public key for the rest. An algorithm missing here is refused."""
    registry = get_default_algorithms()
    keys: dict[str, Any] = {}
    public_key = None
    if not auth_config.algorithms:
        raise AuthConfigError("auth.algorithms: no algorithm is configured")
    for name in auth_config.algorithms:
        algorithm = registry.get(name) if name != "none" else None
        if algorithm is None:
            raise AuthConfigError(f"auth.algorithms: {name!r} is not accepted")
        if isinstance(algorithm, HMACAlgorithm):
            if not auth_config.secret:
                raise AuthConfigError(f"auth.secret: {name} needs a secret")
            try:
                keys[name] = algorithm.prepare_key(auth_config.secret)
            except jwt.InvalidKeyError as error:  # e.g. a PEM given as the secret
                raise AuthConfigError(f"auth.secret: {error}") from None
            continue
        if public_key is None:
            public_key = _load_public_key(auth_config.public_key, name)
        try:
            keys[name] = algorithm.prepare_key(public_key)
        except (jwt.InvalidKeyError, TypeError):  # another family, or curve
            curve = getattr(public_key, "curve", None)
            held = type(public_key).__name__ + (f" on {curve.name}" if curve else "")
            raise AuthConfigError(
                f"auth.public_key: {name} cannot verify with an {held}"
            ) from None
    return keys


def _load_public_key(pem: bytes | None, algorithm: str) -> Any:
    if not pem:
        raise AuthConfigError(f"auth.public_key: {algorithm} needs a public key")
    try:
        return load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise AuthConfigError("auth.public_key: not a PEM public key") from None
