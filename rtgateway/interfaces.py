"""Interfaces between the layers, so that none imports the one above it.

The gateway implements :class:`IConnection`; components reach connections
only through it. The sessions component implements
:class:`ISessionManager`; the gateway reaches sessions only through it.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IConnection(Interface):
    """One client's live WebSocket connection, as the layers above see it."""

    connection_id = Attribute("A process-unique string naming this connection.")
    principal = Attribute("The authenticated :class:`rtgateway.auth.Principal`.")
    peer_host = Attribute("The client's IP address, as a string.")
    session_id = Attribute("The id of the attached session, or None before it.")

    codec = Attribute(
        "The connection's :class:`rtgateway.wire.codecs.Codec` (its ``NAME``)."
    )

    def send_payload(payload):
        """Send a message already encoded with the connection's codec.

        Within the same send-buffer bound as every other message.
        """

    def send_notification(method, params):
        """Queue a JSON-RPC notification to the client.

        Never raises for a closed or slow connection: a connection over its
        send buffer closes itself (4008) and drops what follows.
        """

    writable = Attribute(
        "False while the connection's transport buffer is full, or while what "
        "it gathered this turn waits to be sent: a sender with much to say "
        "(a replay) waits for when_writable instead of queueing."
    )

    def when_writable(action):
        """Call ``action`` once, when the connection is writable again."""

    def close(code, reason):
        """Start the closing handshake with a protocol close code and reason."""

    def watch(key, sink):
        """Show the connection's frames in and out to ``sink`` (``admin.trace``).

        ``sink(record, watcher)`` gets a description of each frame shown
        (direction, method, size, time, the document with its credentials
        redacted and cut to ``[admin] trace_max_frame_bytes``); frames over
        ``[admin] trace_rate`` are counted in ``watcher.dropped`` instead.
        Returns the watcher (``shown``, ``dropped``); a second call with the
        same ``key`` replaces the first.
        """

    def unwatch(key):
        """Stop what :meth:`watch` started under ``key``; its watcher, or None."""

    def inspect():
        """A dict of what an admin may see of the connection: its id, peer,
        codec, roles, ``since_ms``, ``rtt_ms``, messages and bytes in and out,
        ``send_buffer`` fill and whether it is traced; never a credential."""


class ISessionManager(Interface):
    """Owns sessions; the gateway tells it when connections come and go."""

    def attach(connection):
        """Create (or prepare) the session of a newly opened connection.

        Returns a Deferred firing with the ``session.welcome`` params; the
        gateway sends nothing else before that notification.
        """

    def detach(connection, close_code):
        """The connection is gone (``close_code`` None when it just dropped)."""
