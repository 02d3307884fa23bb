"""Static files of the browser pages, served from package data.

The files under ``rtgateway/web/static/<directory>/`` ship in the wheel and
are read into memory once, when the gateway starts: a directory serves
exactly the files it held then, so no request path can reach another file
(there is no path to resolve, hence no traversal) and nothing is listed.
They are a few hundred kilobytes; holding them spares a disk read per
request and gives each its ETag up front.

Every answer carries the headers the pages rely on for safety:

- a Content-Security-Policy that allows scripts, styles, images and
  WebSockets from the gateway's own origin only: the pages run no inline
  script and fetch nothing from elsewhere, so an injected ``<script>`` or
  a foreign connection is refused by the browser;
- ``X-Content-Type-Options: nosniff``, so a file is only ever run as the
  type it is served with;
- ``Referrer-Policy: no-referrer``, since ``/debug/?access_token=...``
  holds a token in its URL.

HTML is ``no-store`` (its URL may hold a token, and a new release must be
seen at once); scripts and styles are ``no-cache`` with an ETag, so a
browser asks each time and gets ``304 Not Modified`` while nothing changed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from twisted.web.resource import Resource

#: The types of the files a page directory may hold; others are not served.
CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".json": b"application/json",
    ".png": b"image/png",
    ".svg": b"image/svg+xml",
}
# A Host header worth naming in the policy: a name or address and a port.
_HOST = re.compile(rb"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def content_security_policy(host: bytes | None) -> bytes:
    """The page policy: everything from this origin, WebSockets to this host.

    ``connect-src 'self'`` covers ``ws:``/``wss:`` to the same host in
    browsers that follow CSP level 3; naming the host's ``ws://`` and
    ``wss://`` keeps older ones working. A Host that is not a plain host
    and port is left out rather than copied into the header.
    """
    connect = b"'self'"
    if host and _HOST.fullmatch(host):
        connect += b" ws://" + host + b" wss://" + host
    return (
        b"default-src 'self'; script-src 'self'; style-src 'self'; "
        b"img-src 'self' data: blob:; connect-src " + connect + b"; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        b"form-action 'self'"
    )


def set_page_headers(request: Any) -> None:
    """The safety headers of every answer under a page directory."""
    request.setHeader(
        b"content-security-policy",
        content_security_policy(request.getHeader(b"host")),
    )
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")


def plain_page(request: Any, code: int, title: str, text: str) -> bytes:
    """A short HTML answer with no script and no data, for refusals."""
    request.setResponseCode(code)
    set_page_headers(request)
    request.setHeader(b"content-type", CONTENT_TYPES[".html"])
    request.setHeader(b"cache-control", b"no-store")
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>{title}</title><h1>{title}</h1><p>{text}</p></html>"
    ).encode()


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file's bytes with the headers it is served with."""

    body: bytes
    content_type: bytes
    etag: bytes

    @classmethod
    def of(cls, body: bytes, suffix: str) -> StaticFile:
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, CONTENT_TYPES[suffix], b'"' + digest.encode() + b'"')

    @property
    def is_html(self) -> bool:
        return self.content_type == CONTENT_TYPES[".html"]


def load_directory(name: str) -> dict[bytes, StaticFile]:
    """The files of ``rtgateway/web/static/<name>/`` whose type is known."""
    directory = files("rtgateway.web").joinpath("static", name)
    loaded = {}
    for entry in directory.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            loaded[entry.name.encode()] = StaticFile.of(entry.read_bytes(), suffix)
    return loaded


class MethodsOr405(Resource):
    """A resource that answers the methods it renders, and 405 to every other.

    twisted.web would answer an unknown method 501 and a known one it does
    not render 405 with an HTML page of its own; here both are a 405 that
    names the methods allowed, with the page headers.
    """

    def render(self, request: Any) -> Any:
        allowed = {name[7:] for name in dir(self) if name.startswith("render_")}
        if "GET" in allowed:
            allowed.add("HEAD")
        if request.method.decode("ascii", "replace") in allowed:
            return super().render(request)
        request.setHeader(b"allow", ", ".join(sorted(allowed)).encode())
        return plain_page(request, 405, "Method not allowed", "See the Allow header.")


class PageResource(MethodsOr405):
    """A leaf of a page directory (see :class:`MethodsOr405`)."""

    isLeaf = True


class NotFoundPage(Resource):
    """What a path naming nothing gets, whatever the method: a plain 404
    with the page headers and ``no-store``, since its URL may hold a token."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        return plain_page(request, 404, "Not found", "Nothing is served here.")


class FileResource(PageResource):
    """Serves one :class:`StaticFile` to GET and HEAD."""

    def __init__(self, static: StaticFile) -> None:
        super().__init__()
        self.static = static

    def render_GET(self, request: Any) -> bytes:
        static = self.static
        if request.postpath:  # a path under a file names nothing
            return plain_page(request, 404, "Not found", "No such file.")
        set_page_headers(request)
        request.setHeader(b"content-type", static.content_type)
        if static.is_html:
            request.setHeader(b"cache-control", b"no-store")
        else:
            request.setHeader(b"cache-control", b"no-cache")
            request.setHeader(b"etag", static.etag)
            if _matches(request.getHeader(b"if-none-match"), static.etag):
                request.setResponseCode(304)
                return b""
        request.setHeader(b"content-length", str(len(static.body)).encode())
        return static.body

    # twisted.web answers HEAD with render_GET's headers and no body.


def _matches(if_none_match: bytes | None, etag: bytes) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")}
    return etag in tags or b"*" in tags


class StaticDirectory(MethodsOr405):
    """A page directory: ``/<name>/`` is its ``index.html``, ``/<name>/<file>``
    its files, anything else a 404; ``/<name>`` redirects to ``/<name>/`` so
    that the page's relative imports resolve under it.

    ``extra`` adds resources of its own at names of the directory (a
    generated file, an endpoint).
    """

    def __init__(
        self, name: str, extra: Mapping[bytes, Resource] | None = None
    ) -> None:
        super().__init__()
        self.files = load_directory(name)
        for file_name, static in self.files.items():
            self.putChild(file_name, self.file_resource(file_name, static))
        for child_name, resource in (extra or {}).items():
            self.putChild(child_name, resource)
        index = self.files.get(b"index.html")
        if index is not None:
            self.putChild(b"", self.file_resource(b"index.html", index))

    def file_resource(self, name: bytes, static: StaticFile) -> Resource:
        """The resource serving one file (a subclass may guard some)."""
        return FileResource(static)

    def getChild(self, path: bytes, request: Any) -> Any:
        return NotFoundPage()

    def render_GET(self, request: Any) -> bytes:
        # Relative to the directory's own name, so it can never point away.
        location = request.prepath[-1] + b"/"
        query = request.uri.partition(b"?")[2]
        if query:
            location += b"?" + query
        request.redirect(location)
        set_page_headers(request)
        return b""
