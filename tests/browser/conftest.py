"""Fixtures of the browser tests: real Chromium, real node, real gateways.

Chromium is the machine's own (``apt-get install chromium``), driven by
Playwright's synchronous API; Playwright never downloads a browser here.
The tests that use it take no reactor: each blocks on the browser and on
gateway processes (``twistd``, as an operator starts them), with every wait
bounded by a Playwright timeout.

Without Chromium or node every test of this directory errors with what to
install: the browser tests fail where the tools are missing, they are never
skipped.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from players import Player
from websockets.sync.client import connect

from rtgateway.testing import GatewayProcess, make_config, token_for

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "_static" / "screenshots"
DEVELOPMENT_CONFIG = ROOT / "config" / "development.toml"
#: The machine's Chromium, unless RTGW_CHROMIUM names another binary.
CHROMIUM = os.environ.get("RTGW_CHROMIUM") or shutil.which("chromium")
NODE = shutil.which("node")
#: Flags for a quiet, reproducible headless Chromium in a container: no
#: sandbox (tests run as root), no GPU, and nothing fetched in the background.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The screenshots' size, small enough to commit.
VIEWPORT = {"width": 1000, "height": 640}
#: Milliseconds any one Playwright action or expectation may take.
TIMEOUT_MS = 15_000
TOKENS = make_config()


@pytest.fixture(scope="session", autouse=True)
def browser_tools() -> None:
    """Fail every browser test, with what to install, when a tool is missing."""
    missing = []
    if not CHROMIUM or not os.access(CHROMIUM, os.X_OK):
        missing.append(
            "Chromium: apt-get install chromium (or set RTGW_CHROMIUM to its binary)"
        )
    if not NODE:
        missing.append("node >= 20 with npm: apt-get install nodejs npm")
    if missing:
        pytest.fail("the browser tests need " + "; ".join(missing), pytrace=False)


@pytest.fixture(scope="session")
def browser(browser_tools) -> Iterator[Any]:
    """One headless Chromium for the session, with a fresh profile.

    ``launch`` gives the browser a new temporary user-data directory, removed
    when it closes; each test then opens its own context (no cookies, storage
    or cache shared between tests).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


class Pages:
    """Opens pages in fresh browser contexts and keeps what they report.

    Uncaught exceptions in a page fail its test at teardown, with the
    console's output, so a page that breaks while the assertions happen to
    pass does not go unnoticed.
    """

    def __init__(self, browser: Any) -> None:
        self._browser = browser
        self._contexts: list[Any] = []
        self.console: list[str] = []
        self.errors: list[str] = []

    def open(self, url: str, name: str = "page") -> Any:
        context = self._browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        self._contexts.append(context)
        page = context.new_page()
        page.on(
            "console", lambda message: self.console.append(f"{name}: {message.text}")
        )
        page.on("pageerror", lambda error: self.errors.append(f"{name}: {error}"))
        page.goto(url)
        return page

    def close(self) -> None:
        for context in self._contexts:
            context.close()


@pytest.fixture
def pages(browser) -> Iterator[Pages]:
    """Pages of this test, closed afterwards; none may throw uncaught errors."""
    opened = Pages(browser)
    yield opened
    opened.close()
    console = "\n".join(opened.console)
    assert not opened.errors, f"{opened.errors}\nconsole:\n{console}"


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """Saves a page as docs/_static/screenshots/<name>.png (the docs show it)."""

    def save(page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), type="png")
        return path

    return save


def demo_sections() -> dict[str, dict[str, Any]]:
    """config/development.toml as the tests' gateways use it.

    The pages are tested against the configuration they are developed with
    (its zones, topics and the demo switched on); only the listening port,
    the gateway's name and the secret are the test's own.
    """
    sections = tomllib.loads(DEVELOPMENT_CONFIG.read_text())
    gateway = sections.setdefault("gateway", {})
    for key in ("id", "listen"):
        gateway.pop(key, None)
    sections["auth"] = {
        key: value
        for key, value in sections.get("auth", {}).items()
        if key not in ("secret", "secret_env")
    }
    sections.setdefault("debug", {})["demo"] = True
    sections.setdefault("admin", {})["enabled"] = True
    return sections


@pytest.fixture
def admin_token() -> str:
    """A token with the admin role, signed with the gateways' secret."""
    return token_for(TOKENS, "root", roles=["admin"])


@pytest.fixture
def gateways(fleet) -> Callable[..., GatewayProcess]:
    """Starts gateways on the development configuration (of the ``fleet``).

    ``start(name, **sections)`` merges ``sections`` into each section of
    it.
    """

    def start(name: str, **overrides: dict[str, Any]) -> GatewayProcess:
        sections = demo_sections()
        for section, keys in overrides.items():
            sections.setdefault(section, {}).update(keys)
        return fleet.start(sections, name)

    return start


@pytest.fixture
def cluster(gateways, redis_server) -> Callable[[str], GatewayProcess]:
    """Gateways of one cluster on the module's redis-server, emptied first."""
    redis_server.flush()

    def start(name: str, **overrides: dict[str, Any]) -> GatewayProcess:
        backend = {"kind": "redis", "redis_url": redis_server.url}
        backend.update(overrides.pop("backend", {}))
        return gateways(name, backend=backend, **overrides)

    return start


@pytest.fixture
def players() -> Iterator[Callable[[GatewayProcess, str], Player]]:
    """``open(gateway, name)``: players of this test, closed when it ends."""
    with ExitStack() as opened:

        def open_player(gateway: GatewayProcess, name: str) -> Player:
            url = f"{gateway.url}?access_token={token_for(TOKENS, name)}"
            return Player(opened.enter_context(connect(url, open_timeout=10)), name)

        yield open_player
