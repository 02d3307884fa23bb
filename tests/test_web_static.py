"""The browser pages' files and endpoints on the gateway's HTTP port.

Requests are raw HTTP/1.1 fed to the gateway's own site (the service tree on
a Clock), so every header is the one a browser would get.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import jwt
import orjson
import pytest
from twisted.internet.testing import StringTransport

from rtgateway.auth import Authenticator
from rtgateway.config import ConfigError, load_config
from rtgateway.testing import make_config
from rtgateway.web.pages import DEMO_REQUEST_MAX_BYTES, DEMO_TOKENS_PER_S
from rtgateway.web.static import CONTENT_TYPES

STATIC = files("rtgateway.web").joinpath("static")
DEVELOPMENT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "development.toml"
ARENA = {
    "position": ["x", "y"],
    "fields": {"x": {"type": "number"}, "y": {"type": "number"}},
}
HTML = "text/html; charset=utf-8"
DEMO = {"debug": {"demo": True, "demo_zone": "arena"}, "zones": {"arena": ARENA}}


class Response:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status.split()[1])
        self.headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self):
        return orjson.loads(self.body)


def request(gateway, method, path, headers=None, body=b"", host="127.0.0.1:8080"):
    """One request on a fresh connection; the whole response."""
    channel = gateway.gateway.site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    channel.dataReceived("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
    return Response(transport.value())


def post_token(gateway, document, content_type="application/json"):
    body = document if isinstance(document, bytes) else orjson.dumps(document)
    return request(gateway, "POST", "/demo/token", {"Content-Type": content_type}, body)


@pytest.fixture
def gateway(make_memory_gateway):
    return make_memory_gateway()


@pytest.fixture
def demo(make_memory_gateway):
    return make_memory_gateway(DEMO)


def assert_page_headers(response):
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy
    assert "connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def assert_served(response, directory, name, content_type, cache_control):
    """The file itself, with its type, caching and the page headers."""
    assert response.status == 200
    assert response.body == STATIC.joinpath(directory, name).read_bytes()
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == cache_control
    assert_page_headers(response)


def test_client_module_is_served_as_javascript_with_an_etag(gateway):
    response = request(gateway, "GET", "/client/rtgateway.js")
    assert_served(
        response, "client", "rtgateway.js", "text/javascript; charset=utf-8", "no-cache"
    )
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])
    assert_page_headers(response)


def test_unchanged_file_is_not_modified(gateway):
    etag = request(gateway, "GET", "/client/rtgateway.js").headers["etag"]
    for sent in (etag, f'W/{etag}, "other"', "*"):
        response = request(
            gateway, "GET", "/client/rtgateway.js", {"If-None-Match": sent}
        )
        assert (response.status, response.body) == (304, b"")
    stale = request(gateway, "GET", "/client/rtgateway.js", {"If-None-Match": '"x"'})
    assert stale.status == 200 and stale.body


def test_head_has_the_headers_and_no_body(gateway):
    response = request(gateway, "HEAD", "/client/rtgateway.js")
    assert response.status == 200 and response.body == b""
    size = len(STATIC.joinpath("client", "rtgateway.js").read_bytes())
    assert response.headers["content-length"] == str(size)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/client/rtgateway.js", "/debug"])
def test_files_and_directories_refuse_other_methods(gateway, method, path):
    response = request(gateway, method, path, body=b"x")
    assert response.status == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/client/",  # no index: nothing is listed
        "/client/missing.js",
        "/client/../app.py",
        "/client/%2e%2e/app.py",
        "/client/..%2fapp.py",
        "/client/rtgateway.js/x",
        "/client//rtgateway.js",
        "/debug/../../setup.cfg",
        "/static/client/rtgateway.js",
    ],
)
def test_only_the_files_of_a_directory_are_reachable(gateway, path):
    response = request(gateway, "GET", path)
    assert response.status == 404
    # A 404's URL may hold a token too: the page headers, and never cached.
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_config_json_tells_pages_where_the_websocket_is(make_memory_gateway):
    plain = make_memory_gateway({"gateway": {"path": "/game/ws"}})
    response = request(plain, "GET", "/client/config.json")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"ws_path": "/game/ws", "demo_zone": None}
    demo = make_memory_gateway(DEMO)
    assert request(demo, "GET", "/client/config.json").json()["demo_zone"] == "arena"


def test_directory_without_slash_redirects_under_it(gateway):
    response = request(gateway, "GET", "/debug?access_token=abc")
    assert response.status == 302
    assert response.headers["location"] == "debug/?access_token=abc"


def test_inspector_page_without_token_is_served(gateway):
    response = request(gateway, "GET", "/debug/")
    assert_served(response, "debug", "index.html", HTML, "no-store")


def test_inspector_page_is_refused_to_a_bad_token(gateway):
    page = STATIC.joinpath("debug", "index.html").read_bytes()
    response = request(gateway, "GET", "/debug/?access_token=not-a-jwt")
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert b"<script" not in response.body and response.body != page
    assert_page_headers(response)
    expired = gateway.token("root", roles=["admin"], now=-7200, ttl_s=60)
    assert request(gateway, "GET", f"/debug/?access_token={expired}").status == 401


def test_inspector_page_is_refused_to_a_player(gateway):
    token = gateway.token("alice")
    for path in ("/debug/", "/debug/index.html"):
        response = request(gateway, "GET", f"{path}?access_token={token}")
        assert response.status == 403
        assert b"<script" not in response.body and b"admin role" in response.body


def test_inspector_page_is_served_to_an_admin(gateway):
    token = gateway.token("root", roles=["admin"])
    response = request(gateway, "GET", f"/debug/?access_token={token}")
    assert response.status == 200
    assert response.body == STATIC.joinpath("debug", "index.html").read_bytes()


def test_inspector_can_be_switched_off(make_memory_gateway):
    off = make_memory_gateway({"debug": {"inspector": False}})
    assert request(off, "GET", "/debug/").status == 404
    assert request(off, "GET", "/client/rtgateway.js").status == 200


def test_demo_is_off_by_default(gateway):
    assert request(gateway, "GET", "/demo/").status == 404
    assert post_token(gateway, {"player": "ann"}).status == 404


def test_demo_page_and_its_files(demo):
    assert_served(
        request(demo, "GET", "/demo/"), "demo", "index.html", HTML, "no-store"
    )
    for name in ("demo.js", "demo.css"):
        assert request(demo, "GET", f"/demo/{name}").status == 200


def test_demo_token_is_a_short_lived_player_token(demo):
    response = post_token(demo, {"player": "ann"})
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    document = response.json()
    assert document["player_id"] == "ann" and document["expires_in_s"] == 900
    authenticator = Authenticator(demo.config.auth, demo.clock)
    principal = authenticator.authenticate(document["token"])
    assert principal.player_id == "ann" and not principal.roles
    claims = jwt.decode(document["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900


def test_demo_token_names_a_guest_when_no_player_is_asked_for(demo):
    first, second = post_token(demo, {}).json(), post_token(demo, b"").json()
    assert re.fullmatch(r"guest-[0-9a-f]{6}", first["player_id"])
    assert first["player_id"] != second["player_id"]


@pytest.mark.parametrize(
    "document",
    [{"player": ""}, {"player": "a" * 33}, {"player": "ann!"}, {"player": 7}],
)
def test_demo_token_refuses_a_bad_name(demo, document):
    response = post_token(demo, document)
    assert response.status == 400 and "player" in response.json()["error"]


def test_demo_token_refuses_what_is_not_a_json_request(demo):
    assert post_token(demo, b"{", "application/json").status == 400
    assert post_token(demo, b"player=ann", "text/plain").status == 415
    assert (
        post_token(demo, b"player=ann", "application/x-www-form-urlencoded").status
        == 415
    )
    too_large = b'{"player": "' + b"a" * DEMO_REQUEST_MAX_BYTES + b'"}'
    assert post_token(demo, too_large).status == 413
    assert request(demo, "GET", "/demo/token").status == 405


def test_demo_tokens_are_rate_limited(demo):
    burst = int(2 * DEMO_TOKENS_PER_S)
    assert all(post_token(demo, {}).status == 200 for _ in range(burst))
    refused = post_token(demo, {})
    assert refused.status == 429 and refused.headers["retry-after"] == "1"
    demo.clock.advance(1)
    assert post_token(demo, {}).status == 200


def test_demo_needs_a_zone_and_an_hmac_secret():
    with pytest.raises(ConfigError, match=r"debug\.demo_zone"):
        make_config({"debug": {"demo": True}})
    with pytest.raises(ConfigError, match='did you mean "arena"'):
        make_config({**DEMO, "debug": {"demo": True, "demo_zone": "arenna"}})
    assert make_config(DEMO).debug.demo_zone == "arena"


def test_policy_names_no_host_it_cannot_trust(gateway):
    response = request(gateway, "GET", "/client/rtgateway.js", host="x; script-src *")
    policy = response.headers["content-security-policy"]
    assert "connect-src 'self';" in policy and "*" not in policy


def page_files():
    return [
        (directory.name, entry.name)
        for directory in STATIC.iterdir()
        for entry in directory.iterdir()
        if entry.name.endswith(".html")
    ]


@pytest.mark.parametrize(("directory", "name"), page_files())
def test_pages_hold_nothing_the_policy_would_refuse(directory, name):
    """No inline script or style and nothing from another origin."""
    html = STATIC.joinpath(directory, name).read_text()
    for script in re.findall(r"<script\b[^>]*>", html, re.IGNORECASE):
        assert "src=" in script, script
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html, re.IGNORECASE)
    assert not re.search(r"\sstyle\s*=", html, re.IGNORECASE)
    assert not re.search(r"<style\b", html, re.IGNORECASE)
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html, re.IGNORECASE)


def test_every_page_file_has_a_served_type():
    for directory in STATIC.iterdir():
        for entry in directory.iterdir():
            suffix = "." + entry.name.rpartition(".")[2]
            assert suffix in CONTENT_TYPES, f"{directory.name}/{entry.name}"


def test_development_config_serves_the_demo_and_the_inspector():
    config = load_config(DEVELOPMENT_CONFIG, environ={})
    assert config.debug.demo and config.debug.inspector and config.admin.enabled
    zone = config.zones[config.debug.demo_zone]
    assert zone.position == ("x", "y")
