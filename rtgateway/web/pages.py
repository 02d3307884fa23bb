"""The browser pages on the gateway's port: ``/client/``, ``/debug/``, ``/demo/``.

- ``/client/`` serves ``rtgateway.js`` and ``config.json``, which tells a
  page where the WebSocket is and which zone the demo plays in: the pages
  hold no address of their own, so they work behind any proxy or port.
- ``/debug/`` is the inspector. Its data comes over the WebSocket and only
  to a token with the ``admin`` role; the page itself is refused when its
  URL carries a token that is not one (401 for a token that does not
  verify, 403 for one without the role), so a wrong link shows a plain
  refusal instead of a page that cannot work. Without a token the page asks
  for one.
- ``/demo/`` is the playable demo, only when ``[debug] demo`` is on, with
  ``POST /demo/token``: a player token for whoever asks.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource

from rtgateway.auth import AuthenticationFailed, Authenticator, token_from_request
from rtgateway.ratelimit import TokenBucket
from rtgateway.tokens import mint_token
from rtgateway.web.static import (
    FileResource,
    PageResource,
    StaticDirectory,
    StaticFile,
    plain_page,
    set_page_headers,
)

#: A demo player's chosen name; the gateway's player ids allow more.
DEMO_PLAYER = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: The largest body POST /demo/token reads.
DEMO_REQUEST_MAX_BYTES = 1024
#: Tokens POST /demo/token mints a second, all callers together (a burst of
#: twice as many): signing is cheap, but not free for a flood.
DEMO_TOKENS_PER_S = 20.0


def page_endpoints(
    config: Any, authenticator: Authenticator, clock: IReactorTime
) -> dict[bytes, Resource]:
    """The page directories this configuration serves, by their first segment."""
    settings = {
        "ws_path": config.gateway.path,
        "demo_zone": config.debug.demo_zone if config.debug.demo else None,
    }
    config_json = StaticFile.of(orjson.dumps(settings), ".json")
    endpoints: dict[bytes, Resource] = {
        b"client": StaticDirectory(
            "client", extra={b"config.json": FileResource(config_json)}
        )
    }
    if config.debug.inspector:
        endpoints[b"debug"] = InspectorDirectory(authenticator)
    if config.debug.demo:
        token = DemoTokenResource(config.auth, config.debug.demo_token_ttl_s, clock)
        endpoints[b"demo"] = StaticDirectory("demo", extra={b"token": token})
    return endpoints


class InspectorDirectory(StaticDirectory):
    """``/debug/``, whose page is refused to a token that is not an admin's."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator
        super().__init__("debug")

    def file_resource(self, name: bytes, static: StaticFile) -> Resource:
        if static.is_html:
            return _AdminPage(static, self._authenticator)
        return FileResource(static)


class _AdminPage(FileResource):
    def __init__(self, static: StaticFile, authenticator: Authenticator) -> None:
        super().__init__(static)
        self._authenticator = authenticator

    def render_GET(self, request: Any) -> bytes:
        token = token_from_request(None, request.args)
        if token is not None:
            try:
                principal = self._authenticator.authenticate(token)
            except AuthenticationFailed:
                request.setHeader(b"www-authenticate", b'Bearer realm="rtgateway"')
                return plain_page(
                    request,
                    401,
                    "Not signed in",
                    "The access token is not valid: it may have expired.",
                )
            if not principal.has_role("admin"):
                return plain_page(
                    request,
                    403,
                    "Forbidden",
                    "The inspector is for tokens with the admin role.",
                )
        return super().render_GET(request)


class DemoTokenResource(PageResource):
    """``POST /demo/token``: a short-lived player token for the demo page.

    The body is JSON, ``{"player": name}`` or ``{}`` for a guest name; its
    content type must say so, which also keeps other sites' pages from
    posting here without a CORS preflight (which is never granted).
    """

    def __init__(self, auth_config: Any, ttl_s: float, clock: IReactorTime) -> None:
        super().__init__()
        self._auth = auth_config
        self._ttl_s = ttl_s
        self._clock = clock
        self._bucket = TokenBucket(clock, DEMO_TOKENS_PER_S, int(2 * DEMO_TOKENS_PER_S))

    def render_POST(self, request: Any) -> bytes:
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0]
        if content_type.strip().lower() != b"application/json":
            return _answer(request, 415, {"error": "send application/json"})
        body = request.content.read(DEMO_REQUEST_MAX_BYTES + 1)
        if len(body) > DEMO_REQUEST_MAX_BYTES:
            return _answer(request, 413, {"error": "the body is too large"})
        try:
            asked = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            return _answer(request, 400, {"error": "the body is not JSON"})
        player = asked.get("player") if isinstance(asked, dict) else None
        if player is None:
            player = "guest-" + secrets.token_hex(3)
        elif not (isinstance(player, str) and DEMO_PLAYER.fullmatch(player)):
            return _answer(
                request, 400, {"error": "player: 1 to 32 letters, digits, _ or -"}
            )
        if not self._bucket.take():
            retry_s = -(-self._bucket.retry_after_ms() // 1000)
            request.setHeader(b"retry-after", str(retry_s).encode())
            return _answer(request, 429, {"error": "too many tokens asked for"})
        token = mint_token(
            self._auth, player, ttl_s=self._ttl_s, now=self._clock.seconds()
        )
        return _answer(
            request,
            200,
            {"token": token, "player_id": player, "expires_in_s": self._ttl_s},
        )


def _answer(request: Any, code: int, document: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    set_page_headers(request)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return orjson.dumps(document)
