"""Where the Redis server is: ``redis://[[user]:password@]host[:port][/db]``.

``rediss://`` means TLS, with the server's certificate checked against the
system's trust store and the host name. The configuration loader has already
checked the URL's shape; this only takes it apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 6379


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A Redis server and how to log in; the password never shows in a repr."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_redis_url(url: str) -> RedisTarget:
    """The :class:`RedisTarget` of a ``redis://`` or ``rediss://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        # Never echo the URL: it may hold the password.
        raise ValueError("a Redis URL must be redis://host:port/db or rediss://...")
    database = parts.path.removeprefix("/")
    return RedisTarget(
        host=parts.hostname,
        port=parts.port or DEFAULT_PORT,
        db=int(database) if database else 0,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
