"""Choosing the Twisted reactor of a benchmarked server process.

The gateway and the baseline must run on the same reactor for their ratio to
mean anything, and the reactor is itself a choice under measurement, so both
processes install it through :func:`install` before anything imports
``twisted.internet.reactor``.
"""

from __future__ import annotations

#: Reactor names a benchmark accepts; ``epoll`` is what Twisted picks on Linux.
REACTORS = ("epoll", "asyncio", "uvloop")


def install(name: str) -> None:
    """Install reactor ``name``; must run before the reactor is imported.

    ``uvloop`` is Twisted's asyncio reactor on a uvloop event loop: Twisted
    builds its loop with ``asyncio.new_event_loop()``, which follows the
    event loop policy set here.
    """
    if name == "epoll":
        from twisted.internet import epollreactor

        epollreactor.install()
    elif name == "asyncio":
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    elif name == "uvloop":
        import asyncio

        import uvloop
        from twisted.internet import asyncioreactor

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncioreactor.install()
    else:
        raise ValueError(f"unknown reactor {name!r}; expected one of {REACTORS}")
