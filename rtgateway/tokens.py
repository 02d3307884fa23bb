"""Developer tokens: mint a JWT the configured gateway accepts.

In production the game's login service issues tokens; this is for local
development, tests and load tools, which need valid tokens without one.
:func:`mint_token` refuses to make a token the gateway would refuse (a bad
``sub``, an algorithm the configuration does not accept, a token over the
size limit), so a mistake shows here and not as a 401 later.

:func:`main` is the command line, reached two ways::

    python -m rtgateway token --config config/rtgateway.toml --sub alice
    rtgateway-token --config config/rtgateway.toml --sub alice

``token`` is the default command: when the first argument names no command,
it is the token command's, which is what lets the ``rtgateway-token``
console script share this entry point. Commands added later get their own
word; ``-h`` first lists them.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from jwt.algorithms import HMACAlgorithm, get_default_algorithms

from rtgateway.auth import MAX_ROLES, MAX_TOKEN_LENGTH, ROLE_PATTERN, SUBJECT_PATTERN
from rtgateway.config import ConfigError, load_config
from rtgateway.wire.errors import RTGatewayError

# Set by mint_token itself; extra_claims may not override them.
_RESERVED_CLAIMS = frozenset({"sub", "exp", "iat", "nbf", "aud", "iss", "roles"})


class MintError(RTGatewayError):
    """The token cannot be made, or the gateway would refuse it."""


def mint_token(
    auth_config: Any,
    sub: str,
    *,
    roles: Iterable[str] = (),
    ttl_s: float = 3600,
    now: float | None = None,
    private_key: bytes | None = None,
    algorithm: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT for player ``sub``, valid from ``now`` for ``ttl_s`` seconds.

    HS* tokens are signed with the configuration's secret; the other
    algorithms need ``private_key`` (PEM), the pair of the configured public
    key. Without ``algorithm``, the first configured one of the family the
    key material allows is used. ``iat`` and ``nbf`` are ``now`` rounded
    down to the second and ``exp`` is ``ttl_s`` later, rounded up; ``aud``
    and ``iss`` are the configured ones, ``roles`` is set when given.
    """
    if not (isinstance(sub, str) and SUBJECT_PATTERN.fullmatch(sub)):
        raise MintError(
            f"sub {sub!r} is not a player id: 1 to 64 letters, digits, '_' or '-'"
        )
    role_list = list(dict.fromkeys(roles))
    bad_roles = [
        role
        for role in role_list
        if not (isinstance(role, str) and ROLE_PATTERN.fullmatch(role))
    ]
    if bad_roles:
        raise MintError(
            f"role {bad_roles[0]!r} is not a role name: 1 to 64 letters, digits, "
            "'_', '.' or '-'"
        )
    if len(role_list) > MAX_ROLES:
        raise MintError(f"{len(role_list)} roles given; at most {MAX_ROLES} allowed")
    if not (math.isfinite(ttl_s) and ttl_s > 0):
        raise MintError(f"ttl must be a positive number of seconds, got {ttl_s}")
    clashing = sorted(_RESERVED_CLAIMS.intersection(extra_claims or {}))
    if clashing:
        raise MintError(f"extra claims may not set {', '.join(clashing)}")

    algorithm, key = _signing_key(auth_config, algorithm, private_key)
    issued = math.floor(time.time() if now is None else now)
    claims: dict[str, Any] = {
        **(extra_claims or {}),
        "sub": sub,
        "iat": issued,
        "nbf": issued,
        "exp": issued + math.ceil(ttl_s),
    }
    if auth_config.audience is not None:
        claims["aud"] = auth_config.audience
    if auth_config.issuer is not None:
        claims["iss"] = auth_config.issuer
    if role_list:
        claims["roles"] = role_list
    try:
        token = jwt.encode(claims, key, algorithm=algorithm)
    except (jwt.PyJWTError, ValueError, TypeError, UnsupportedAlgorithm) as error:
        # One line: cryptography's messages can run over several.
        detail = " ".join(str(error).split())
        raise MintError(f"cannot make the {algorithm} token: {detail}") from None
    if private_key and auth_config.public_key:
        # The usual mistake with key files: a private key from another pair.
        try:
            jwt.PyJWS().decode(token, auth_config.public_key, algorithms=[algorithm])
        except jwt.PyJWTError:
            raise MintError(
                "the token does not verify with auth.public_key: the private "
                "key is not its pair"
            ) from None
    if len(token) > MAX_TOKEN_LENGTH:
        raise MintError(
            f"the token is {len(token)} characters; the gateway refuses more "
            f"than {MAX_TOKEN_LENGTH}"
        )
    return token


def _signing_key(
    auth_config: Any, algorithm: str | None, private_key: bytes | None
) -> tuple[str, Any]:
    """The algorithm to sign with and its key, checked against the configuration."""
    registry = get_default_algorithms()

    def is_hmac(name: str) -> bool:
        return isinstance(registry.get(name), HMACAlgorithm)

    configured = tuple(auth_config.algorithms)
    if algorithm is None:
        with_secret = not private_key
        family = [name for name in configured if is_hmac(name) == with_secret]
        if not family:
            kind = "HS*" if with_secret else "asymmetric"
            raise MintError(f"auth.algorithms has no {kind} algorithm to sign with")
        algorithm = family[0]
    if algorithm not in configured:
        raise MintError(
            f"{algorithm} is not in auth.algorithms ({', '.join(configured)}): "
            "the gateway would refuse the token"
        )
    if is_hmac(algorithm):
        if private_key:
            raise MintError(f"{algorithm} signs with auth.secret, not a private key")
        if not auth_config.secret:
            raise MintError(f"{algorithm} needs auth.secret (or auth.secret_env)")
        return algorithm, auth_config.secret
    if not private_key:
        raise MintError(f"{algorithm} needs a private key (--private-key-file)")
    return algorithm, private_key


def main(argv: Sequence[str] | None = None) -> int:
    """Run a developer command; returns the exit status (2 on any error).

    Errors are one line on stderr, never a traceback; a minted token is one
    line on stdout, so ``TOKEN=$(rtgateway-token ...)`` works.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in (*_COMMANDS, "-h", "--help"):
        args.insert(0, "token")
    options = _parser().parse_args(args)
    try:
        return options.run(options)
    except (ConfigError, MintError) as error:
        print(f"rtgateway {options.command}: {error}", file=sys.stderr)
    except OSError as error:
        print(
            f"rtgateway {options.command}: cannot read {error.filename}: "
            f"{error.strerror}",
            file=sys.stderr,
        )
    return 2


def _token_command(options: argparse.Namespace) -> int:
    config = load_config(options.config)
    private_key = (
        options.private_key_file.read_bytes() if options.private_key_file else None
    )
    roles = [role.strip() for role in options.roles.split(",") if role.strip()]
    print(
        mint_token(
            config.auth,
            options.sub,
            roles=roles,
            ttl_s=options.ttl,
            private_key=private_key,
            algorithm=options.algorithm,
        )
    )
    return 0


_COMMANDS = {"token": _token_command}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtgateway",
        description="rtgateway developer commands. Without a command word, "
        "the arguments are the token command's (this is how rtgateway-token "
        "runs).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser(
        "token",
        help="mint a JWT the configured gateway accepts",
        description="Print a signed JWT for a player, on one line.",
    )
    token.add_argument("--config", required=True, type=Path, help="the TOML file")
    token.add_argument("--sub", required=True, help="the player id (the sub claim)")
    token.add_argument(
        "--roles", default="", help="comma-separated roles, e.g. admin,service"
    )
    token.add_argument(
        "--ttl", type=float, default=3600.0, help="seconds until it expires"
    )
    token.add_argument(
        "--private-key-file",
        type=Path,
        help="PEM private key, for RS*/PS*/ES*/EdDSA (HS* uses the config's secret)",
    )
    token.add_argument(
        "--algorithm",
        help="default: the first configured one the key material can sign with",
    )
    token.set_defaults(run=_COMMANDS["token"])
    return parser
