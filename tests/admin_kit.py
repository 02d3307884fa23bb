"""What the admin tests on in-memory gateways share: an admin, its frames."""

from __future__ import annotations


def open_admin(gateway, sub="root"):
    """A connection of ``sub`` with the admin role, welcomed."""
    return gateway.open(sub, token=gateway.token(sub, roles=["admin"]))


def welcome(client):
    """The params of the client's session.welcome."""
    return client.notifications("session.welcome")[0]["params"]


def frames(admin, session_id=None):
    """The admin.frame params the admin got, of one session or of all."""
    return [
        m["params"]
        for m in admin.notifications("admin.frame")
        if session_id is None or m["params"]["session_id"] == session_id
    ]


def traced_connection(gateway, session_id):
    """The gateway's server-side connection of a session (its ``tap`` tells tracing)."""
    return next(
        c for c in gateway.gateway.factory.connections if c.session_id == session_id
    )
