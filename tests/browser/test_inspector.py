"""The debug inspector at /debug/ in real Chromium, against real gateways.

Players are ``websockets`` clients in this process (players.py); the
inspector is the page the gateway serves, opened with an admin token and
watched through its stable ids and data attributes. Every wait is a
Playwright wait with its timeout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from players import Player
from playwright.sync_api import expect

from rtgateway.testing import GatewayProcess, make_config, token_for

pytestmark = pytest.mark.integration

TOKENS = make_config()
#: Milliseconds of a wait for something the inspector refreshes every second.
WAIT_MS = 10_000
RED = "#ff0000"
GREEN = "#00ff00"


def inspector(pages, gateway: GatewayProcess, token: str | None) -> Any:
    query = f"?access_token={token}" if token else ""
    return pages.open(f"{gateway.http}/debug/{query}", name="inspector")


def row(page, player: Player) -> Any:
    return page.locator(f'#connections-table tbody tr[data-player="{player.name}"]')


def frame_rows(page) -> Any:
    return page.locator("#frames tr.frame")


def shown_count(page) -> int:
    return int(page.locator("#trace-status").get_attribute("data-shown") or "0")


def test_lists_the_connected_players(gateways, pages, players, admin_token):
    """Both players are rows of #connections, by session, with their zone."""
    gateway = gateways("gw-list")
    alice, bob = players(gateway, "alice"), players(gateway, "bob")
    alice.join(20, 30, RED)
    bob.join(70, 60, GREEN)
    page = inspector(pages, gateway, admin_token)

    for player in (alice, bob):
        listed = row(page, player)
        expect(listed).to_have_count(1, timeout=WAIT_MS)
        expect(listed).to_have_attribute("data-session-id", player.session_id)
        expect(listed.locator("td.zone")).to_have_text("arena", timeout=WAIT_MS)
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
    assert "access_token" not in page.url

    page.fill("#filter", bob.session_id)
    expect(row(page, bob)).to_have_count(1, timeout=WAIT_MS)
    expect(row(page, alice)).to_have_count(0, timeout=WAIT_MS)


def test_traces_a_session_live(gateways, pages, players, admin_token, screenshot):
    """Frames appear live; pause, the filter, export, untrace and trace_ended work."""
    gateway = gateways("gw-trace")
    alice, bob = players(gateway, "alice"), players(gateway, "bob")
    alice.join(20, 30, RED)
    bob.join(70, 60, GREEN)
    page = inspector(pages, gateway, admin_token)
    row(page, alice).locator("button.trace").click(timeout=WAIT_MS)
    status = page.locator("#trace-status")
    expect(status).to_have_attribute("data-state", "tracing")

    alice.call("sys.ping")
    pings = page.locator('#frames tr.frame[data-method="sys.ping"]')
    expect(pings).to_have_count(1, timeout=WAIT_MS)
    expect(pings.first).to_have_attribute("data-direction", "in")
    pings.first.click()
    expect(page.locator("#frames tr.detail pre").first).to_contain_text(
        '"method": "sys.ping"'
    )
    alice.move(22, 31)
    expect(page.locator('#frames tr.frame[data-method="state.update"]')).to_have_count(
        1, timeout=WAIT_MS
    )
    expect(row(page, alice)).to_have_attribute("data-traced", "true", timeout=WAIT_MS)
    screenshot(page, "inspector")

    # Paused: frames still arrive (the count grows) but no row is added.
    page.click("#pause")
    before_rows = frame_rows(page).count()
    before_shown = shown_count(page)
    alice.call("sys.ping")
    page.wait_for_function(
        "n => Number(document.querySelector('#trace-status').dataset.shown) >= n",
        arg=before_shown + 2,
        timeout=WAIT_MS,
    )
    assert frame_rows(page).count() == before_rows
    page.click("#pause")
    expect(pings).to_have_count(2, timeout=WAIT_MS)

    # The method filter, and an export of what it shows.
    page.fill("#method-filter", "sys.ping")
    expect(frame_rows(page)).to_have_count(2)
    methods = page.eval_on_selector_all(
        "#frames tr.frame", "rows => rows.map(r => r.dataset.method)"
    )
    assert methods == ["sys.ping", "sys.ping"]
    with page.expect_download(timeout=WAIT_MS) as download:
        page.click("#export")
    exported = Path(download.value.path()).read_text().splitlines()
    frames = [json.loads(line) for line in exported]
    assert [f["method"] for f in frames] == ["sys.ping", "sys.ping"]
    assert {f["session_id"] for f in frames} == {alice.session_id}
    assert frames[0]["frame"]["method"] == "sys.ping"
    page.fill("#method-filter", "")
    page.wait_for_function(
        "n => document.querySelectorAll('#frames tr.frame').length >= n",
        arg=before_rows + 2,
        timeout=WAIT_MS,
    )

    # Untraced: the gateway says so, and a later ping adds no frame.
    page.click("#untrace")
    expect(status).to_have_attribute("data-state", "ended")
    expect(status).to_contain_text("untraced")
    expect(row(page, alice)).to_have_attribute("data-traced", "false", timeout=WAIT_MS)
    after = frame_rows(page).count()
    messages_in = int(row(page, alice).get_attribute("data-messages-in") or "0")
    alice.call("sys.ping")
    # Once the listing counts the ping, a frame of it would have come first.
    page.wait_for_function(
        """([name, n]) => {
            const r = document.querySelector(
                `#connections-table tbody tr[data-player="${name}"]`);
            return r && Number(r.dataset.messagesIn) > n;
        }""",
        arg=[alice.name, messages_in],
        timeout=WAIT_MS,
    )
    assert frame_rows(page).count() == after

    # A traced player that goes ends the trace, and the page says why.
    row(page, bob).locator("button.trace").click()
    expect(status).to_have_attribute("data-state", "tracing")
    bob.ws.close()
    expect(status).to_have_attribute("data-state", "ended", timeout=WAIT_MS)
    expect(status).to_contain_text("disconnected")


#: The colour at (x, y) of the zone map: [r, g, b, a].
PIXEL = """([x, y]) => Array.from(document.getElementById('zone-map')
    .getContext('2d').getImageData(x, y, 1, 1).data)"""
#: The dots the zone map says it drew: [{id, x, y}] in canvas pixels.
DOTS = "() => JSON.parse(document.getElementById('zone-map').dataset.dots || '[]')"
#: The zone's bounds on the map: {left, top, right, bottom} in canvas pixels.
FIELD = "() => JSON.parse(document.getElementById('zone-map').dataset.field)"


def dots(page) -> dict[str, tuple[int, int]]:
    return {d["id"]: (d["x"], d["y"]) for d in page.evaluate(DOTS)}


def is_color(pixel: list[int], channel: int) -> bool:
    """A saturated pixel of one channel (0 red, 1 green): a player's dot."""
    others = [value for index, value in enumerate(pixel[:3]) if index != channel]
    return pixel[channel] > 200 and max(others) < 80


def test_zone_map_draws_the_players_and_follows_a_move(
    gateways, pages, players, admin_token
):
    """Each player is a dot of its colour where data-dots says; a move moves it."""
    gateway = gateways("gw-map")
    alice, bob = players(gateway, "alice"), players(gateway, "bob")
    alice.join(20, 30, RED)
    bob.join(70, 60, GREEN)
    page = inspector(pages, gateway, admin_token)
    expect(page.locator("#zone-select")).to_have_value("arena", timeout=WAIT_MS)
    page.wait_for_function(f"() => ({DOTS})().length === 2", timeout=WAIT_MS)
    drawn = dots(page)
    assert set(drawn) == {"player.alice", "player.bob"}
    # alice is left of and above bob, as her x and y are smaller.
    assert drawn["player.alice"][0] < drawn["player.bob"][0]
    assert drawn["player.alice"][1] < drawn["player.bob"][1]
    assert is_color(page.evaluate(PIXEL, list(drawn["player.alice"])), 0)
    assert is_color(page.evaluate(PIXEL, list(drawn["player.bob"])), 1)
    # The arena's bounds (0 to 100 on both axes) are the map's field: each
    # dot sits at its share of the field's width and height.
    field = page.evaluate(FIELD)
    for player, (x, y) in (("player.alice", (20, 30)), ("player.bob", (70, 60))):
        px = field["left"] + x / 100 * (field["right"] - field["left"])
        py = field["top"] + y / 100 * (field["bottom"] - field["top"])
        assert abs(drawn[player][0] - px) <= 2 and abs(drawn[player][1] - py) <= 2

    before = drawn["player.alice"]
    alice.move(26, 34)
    page.wait_for_function(
        """([x, y]) => {
            const dots = JSON.parse(document.getElementById('zone-map').dataset.dots);
            const a = dots.find(d => d.id === 'player.alice');
            return a && Math.hypot(a.x - x, a.y - y) > 5;
        }""",
        arg=list(before),
        timeout=WAIT_MS,
    )
    moved = dots(page)
    assert is_color(page.evaluate(PIXEL, list(moved["player.alice"])), 0)
    assert not is_color(page.evaluate(PIXEL, list(before)), 0)
    assert moved["player.alice"][0] > before[0]
    assert is_color(page.evaluate(PIXEL, list(moved["player.bob"])), 1)


def test_no_data_without_an_admin_token(gateways, pages, players, admin_token):
    """The form without a token; 403 and 401 pages; a player's token shows nothing."""
    gateway = gateways("gw-auth")
    alice = players(gateway, "alice")
    alice.join(20, 30, RED)

    page = inspector(pages, gateway, None)
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("#panels")).to_be_hidden()
    assert page.locator("#connections-table tbody tr").count() == 0

    for token, status in (
        (token_for(TOKENS, "mallory"), 403),
        ("not.a.token", 401),
    ):
        response = page.goto(f"{gateway.http}/debug/?access_token={token}")
        assert response is not None and response.status == status
        body = response.text()
        assert "alice" not in body and alice.session_id not in body
        assert page.locator("#connections-table").count() == 0

    page = inspector(pages, gateway, None)
    page.fill("#token", token_for(TOKENS, "mallory"))
    page.click("#token-form button[type=submit]")
    expect(page.locator("#auth-error")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#auth-error")).to_contain_text("no admin role")
    expect(page.locator("#panels")).to_be_hidden()
    assert page.locator("#connections-table tbody tr").count() == 0
    expect(page.locator("#token-form")).to_be_visible()

    page.fill("#token", "not.a.token")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#auth-error")).to_contain_text("refused", timeout=WAIT_MS)
    expect(page.locator("#panels")).to_be_hidden()
    assert page.locator("#connections-table tbody tr").count() == 0

    # The same form with an admin token: the data shows, the error goes.
    page.fill("#token", admin_token)
    page.click("#token-form button[type=submit]")
    expect(row(page, alice)).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#auth-error")).to_be_hidden()
    expect(page.locator("#token-form")).to_be_hidden()


def test_lists_the_players_of_every_gateway_of_a_cluster(
    cluster, pages, players, admin_token
):
    """Two gateways on Redis: one inspector lists both players, traces the far one."""
    first, second = cluster("gw-a"), cluster("gw-b")
    alice, bob = players(first, "alice"), players(second, "bob")
    page = inspector(pages, first, admin_token)
    expect(row(page, alice)).to_have_attribute("data-gateway", "gw-a", timeout=WAIT_MS)
    expect(row(page, bob)).to_have_attribute("data-gateway", "gw-b", timeout=WAIT_MS)
    expect(row(page, bob)).to_have_attribute("data-session-id", bob.session_id)
    expect(page.locator("#cluster-status")).to_contain_text("gw-b")

    # A session of the other gateway is traced through the bus.
    row(page, bob).locator("button.trace").click()
    expect(page.locator("#trace-status")).to_have_attribute("data-state", "tracing")
    bob.call("sys.ping")
    pings = page.locator('#frames tr.frame[data-method="sys.ping"]')
    expect(pings).to_have_count(1, timeout=WAIT_MS)

    # Another row picked while the far trace is still starting (both clicks
    # in one task): that trace is ended once it has started, not left
    # running unseen on the other gateway.
    expect(row(page, bob)).to_have_attribute("data-traced", "true", timeout=WAIT_MS)
    page.locator("#untrace").click()
    expect(row(page, bob)).to_have_attribute("data-traced", "false", timeout=WAIT_MS)
    page.evaluate(
        """([far, near]) => {
            document.querySelector(`tr[data-player="${far}"] button.trace`).click();
            document.querySelector(`tr[data-player="${near}"] button.trace`).click();
        }""",
        [bob.name, alice.name],
    )
    expect(page.locator("#trace-status")).to_contain_text("alice", timeout=WAIT_MS)
    expect(row(page, alice)).to_have_attribute("data-traced", "true", timeout=WAIT_MS)
    expect(row(page, bob)).to_have_attribute("data-traced", "false", timeout=WAIT_MS)
