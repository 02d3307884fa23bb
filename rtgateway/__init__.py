"""rtgateway: a real-time WebSocket gateway for multiplayer games."""

__version__ = "0.1.0"
