"""The playable demo at /demo/ in real Chromium, against real gateways.

Each page is what a player opens (``/demo/?player=<name>``): it fetches its
token from ``POST /demo/token``, joins the development configuration's zone
"arena" and moves its dot when the test holds an arrow key. What the test
checks is what a player sees: the canvas's pixels where a dot is drawn, the
status text, the overlay and the chat lines; the page's ``rtgwDemo.client``
only tells the test where to look. Every wait is bounded by a Playwright
timeout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from balancer import Balancer
from playwright.sync_api import expect

pytestmark = pytest.mark.integration

#: Milliseconds of a wait for the gateway or another page.
WAIT_MS = 15_000
#: Milliseconds a killed gateway's page may take to be resumed on the other.
RESUME_MS = 30_000
#: The demo's canvas pixels per world unit (600 px for 0..100).
SCALE = 6
#: What the overlay shows for a number it has.
NUMBER = re.compile(r"^\d+$")

READY = "() => window.rtgwDemo && window.rtgwDemo.ready"

#: Where the page draws the entity `id` now, as rendered() says, or null.
RENDERED = """id => {
    const fields = window.rtgwDemo.client.rendered().get(id);
    return fields ? { ...fields } : null;
}"""

#: The RGB of the canvas pixel at world coordinates [x, y], once two more
#: frames have been drawn (so the canvas shows the state the test has seen).
PIXEL = """async ([x, y]) => {
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    const canvas = document.querySelector('#world');
    const at = canvas.getContext('2d').getImageData(Math.round(x), Math.round(y), 1, 1);
    return Array.from(at.data.slice(0, 3));
}"""

#: Every text #status shows from now on, in order.
WATCH_STATUS = """() => {
    window.statusShown = [];
    const status = document.querySelector('#status');
    new MutationObserver(() => window.statusShown.push(status.textContent))
        .observe(status, { childList: true, characterData: true, subtree: true });
}"""


@pytest.fixture
def balancer() -> Iterator[Any]:
    """``start(*gateways)``: a balancer in front of them, closed afterwards."""
    started: list[Balancer] = []

    def start(*gateways: Any) -> Balancer:
        started.append(Balancer([gateway.port for gateway in gateways]))
        return started[-1]

    yield start
    for each in started:
        each.close()


def open_demo(pages, base: str, query: str, name: str) -> Any:
    """The demo page at ``base``, once it has joined the zone."""
    page = pages.open(f"{base}/demo/{query}", name=name)
    page.wait_for_function(READY, timeout=WAIT_MS)
    return page


def entity(page) -> str:
    return page.evaluate("() => window.rtgwDemo.client.entity")


def own(page) -> dict[str, Any]:
    return page.evaluate(RENDERED, entity(page))


def settled(page) -> dict[str, Any]:
    """The page's own fields once the gateway acknowledged every input.

    The gateway sends a player's own moves back only as acknowledgements
    (with any correction), which the predictor holds.
    """
    page.wait_for_function(
        "() => { const c = window.rtgwDemo.client; "
        "return c.mirror.has(c.entity) && c.predictor.pending.length === 0; }",
        timeout=WAIT_MS,
    )
    return page.evaluate(
        "() => { const c = window.rtgwDemo.client; "
        "return { ...c.mirror.get(c.entity).fields, ...c.predictor.authoritative }; }"
    )


def pixel(page, fields: dict[str, Any]) -> tuple[int, ...]:
    return tuple(page.evaluate(PIXEL, [fields["x"] * SCALE, fields["y"] * SCALE]))


def rgb(color: str) -> tuple[int, ...]:
    return tuple(int(color[at : at + 2], 16) for at in (1, 3, 5))


def hold(page, key: str, until: str, arg: Any) -> None:
    """Hold ``key`` down until the page's ``until(arg)`` holds."""
    page.keyboard.down(key)
    try:
        page.wait_for_function(until, arg=arg, timeout=WAIT_MS)
    finally:
        page.keyboard.up(key)


def chat_lines(page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#chat-log li:not([data-system])",
        "lines => lines.map(l => ({ text: l.textContent, seq: l.dataset.seq }))",
    )


def test_two_pages_see_each_other_move(gateways, pages, players, screenshot):
    """Ann moves away from Ben; Ben's canvas shows her dot where she stopped."""
    gateway = gateways("demo")
    ann = open_demo(pages, gateway.http, "?player=ann", "ann")
    ben = open_demo(pages, gateway.http, "?player=ben", "ben")
    ann_id, ben_id = entity(ann), entity(ben)
    assert (ann_id, ben_id) == ("player.ann", "player.ben")
    expect(ann.locator("#status")).to_have_text("connected")
    expect(ann.locator("#player")).to_have_text("ann")
    ben.wait_for_function(f"() => ({RENDERED})('{ann_id}') !== null", timeout=WAIT_MS)
    ann.wait_for_function(f"() => ({RENDERED})('{ben_id}') !== null", timeout=WAIT_MS)

    start, ben_at = settled(ann), settled(ben)
    assert start["name"] == "ann" and ben_at["name"] == "ben"
    assert start["color"] != ben_at["color"]
    # Away from Ben, until her dot is clear of his and of where it was.
    key = "ArrowLeft" if start["x"] <= ben_at["x"] else "ArrowRight"
    hold(
        ann,
        key,
        f"""([x0, bx]) => {{
            const x = ({RENDERED})('{ann_id}').x;
            return Math.abs(x - x0) >= 8 && Math.abs(x - bx) >= 10;
        }}""",
        [start["x"], ben_at["x"]],
    )
    stopped = settled(ann)
    assert stopped["y"] == start["y"]
    assert abs(stopped["x"] - start["x"]) >= 8

    # Ben's page draws Ann (interpolated) where the gateway says she stopped.
    ben.wait_for_function(
        f"x => Math.abs(({RENDERED})('{ann_id}').x - x) < 0.001",
        arg=stopped["x"],
        timeout=WAIT_MS,
    )
    assert pixel(ben, stopped) == rgb(stopped["color"])
    assert pixel(ben, start) != rgb(stopped["color"])
    assert pixel(ben, ben_at) == rgb(ben_at["color"])
    # And Ann's page her own dot, there too.
    assert pixel(ann, own(ann)) == rgb(stopped["color"])
    expect(ben.locator("#players li")).to_have_count(2)

    talker = players(gateway, "cat")
    talker.call(
        "pubsub.publish",
        {"topic": "chat.arena", "type": "chat.message", "data": {"text": "gl hf"}},
    )
    expect(ann.locator("#chat-log li")).to_have_text(["cat: gl hf"], timeout=WAIT_MS)
    ann.wait_for_function(
        "() => document.querySelector('#rtt').textContent !== '-'", timeout=WAIT_MS
    )
    screenshot(ann, "demo")


def test_a_killed_gateway_shows_reconnecting_then_resumed(
    cluster, balancer, pages, players
):
    """SIGKILL the page's gateway: it resumes on the other, every chat line once."""
    first, second = cluster("demo-a"), cluster("demo-b")
    front = balancer(first, second)
    page = open_demo(pages, front.http, "?player=ann", "ann")
    assert page.evaluate("() => window.rtgwDemo.client.welcome.gateway_id") == "demo-a"
    page.evaluate(WATCH_STATUS)
    talker = players(second, "cat")

    def say(numbers: range) -> None:
        for number in numbers:
            talker.call(
                "pubsub.publish",
                {
                    "topic": "chat.arena",
                    "type": "chat.message",
                    "data": {"text": str(number)},
                },
            )

    say(range(1, 6))
    expect(page.locator("#chat-log li")).to_have_count(5, timeout=WAIT_MS)
    first.kill()
    say(range(6, 11))
    expect(page.locator("#status")).to_have_text("resumed", timeout=RESUME_MS)
    expect(page.locator("#status")).to_have_attribute("data-state", "resumed")
    say(range(11, 16))

    expect(page.locator("#chat-log li")).to_have_count(15, timeout=WAIT_MS)
    lines = chat_lines(page)
    assert [line["text"] for line in lines] == [f"cat: {n}" for n in range(1, 16)]
    offsets = [int(line["seq"]) for line in lines]
    assert offsets == sorted(set(offsets)), offsets
    shown = page.evaluate("() => window.statusShown")
    waited = [i for i, text in enumerate(shown) if text.startswith("reconnecting in")]
    assert waited and shown[-1] == "resumed", shown
    assert waited[0] < shown.index("resumed"), shown
    assert "connected" not in shown, "a fresh session instead of the resumed one"
    stats = page.evaluate("() => window.rtgwDemo.client.stats()")
    assert (stats["reconnects"], stats["resumes"]) == (1, 1), stats
    assert page.evaluate("() => window.rtgwDemo.client.welcome.gateway_id") == "demo-b"
    expect(page.locator("#reconnects")).to_have_text("1", timeout=WAIT_MS)

    # The dot survived the move to the other gateway, and still moves there.
    before = settled(page)
    key = "ArrowRight" if before["x"] < 50 else "ArrowLeft"
    hold(
        page,
        key,
        f"x0 => Math.abs(({RENDERED})('{entity(page)}').x - x0) >= 3",
        before["x"],
    )
    after = settled(page)
    assert abs(after["x"] - before["x"]) >= 3


def test_the_overlay_toggles_by_button_and_key(gateways, pages):
    """The network overlay shows live numbers and hides by button or "o".

    The page is a guest's (no ?player=): the token endpoint names it.
    """
    gateway = gateways("demo")
    page = open_demo(pages, gateway.http, "", "guest")
    guest = page.evaluate("() => window.rtgwDemo.playerId")
    assert re.fullmatch(r"guest-[a-z0-9]+", guest), guest
    assert entity(page) == f"player.{guest}"
    expect(page.locator("#player")).to_have_text(guest)
    overlay, button = page.locator("#overlay"), page.locator("#overlay-toggle")
    expect(overlay).to_be_visible()
    for number in ("#rtt", "#msgs", "#bytes"):
        expect(page.locator(number)).to_have_text(NUMBER, timeout=WAIT_MS)
    expect(page.locator("#reconnects")).to_have_text("0")
    expect(page.locator("#desyncs")).to_have_text("0")

    button.click()
    expect(overlay).to_be_hidden()
    expect(button).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("o")
    expect(overlay).to_be_visible()
    expect(button).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("o")
    expect(overlay).to_be_hidden()

    # Typing an "o" into the chat is a letter, not the shortcut.
    page.fill("#chat-input", "")
    page.locator("#chat-input").press("o")
    expect(overlay).to_be_hidden()
    expect(page.locator("#chat-input")).to_have_value("o")


def test_debug_mode_draws_a_corrected_prediction(gateways, pages):
    """A move faster than max_speed is corrected: the dot snaps back, a ghost shows."""
    gateway = gateways("demo")
    page = open_demo(pages, gateway.http, "?player=ann&debug=1", "ann")
    start = settled(page)
    direction = 1 if start["x"] < 50 else -1
    # 40 units at once: twice what the zone's max_speed (20/s) allows in its
    # one-second burst, so the gateway shortens the move.
    predicted = page.evaluate(
        "dx => window.rtgwDemo.client.input({ dx, dy: 0, dt: 40 / 18 })", direction
    )
    assert abs(predicted["x"] - (start["x"] + 40 * direction)) < 0.011
    ghost = page.evaluate(
        """async ([x, y, radius]) => {
            const client = window.rtgwDemo.client;
            const frame = () => new Promise(r => requestAnimationFrame(r));
            for (let n = 0; n < 600 && !client.predictor.corrections; n++) {
                await frame();
            }
            await frame();
            await frame();
            const canvas = document.querySelector('#world');
            const box = canvas.getContext('2d')
                .getImageData(x - radius, y - radius, 2 * radius, 2 * radius);
            let red = 0;
            for (let i = 0; i < box.data.length; i += 4) {
                const [r, g, b] = box.data.slice(i, i + 3);
                // The ghost's #ff4040, which no player's colour resembles.
                if (r > 200 && g < 90 && Math.abs(g - b) < 16) red++;
            }
            return { corrections: client.predictor.corrections, red };
        }""",
        [predicted["x"] * SCALE, predicted["y"] * SCALE, 3 * SCALE + 4],
    )
    assert ghost["corrections"] == 1, ghost
    assert ghost["red"] >= 20, ghost
    corrected = settled(page)
    assert 0 < abs(corrected["x"] - start["x"]) <= 20.01
    assert abs(own(page)["x"] - corrected["x"]) < 0.001
    expect(page.locator("#corrections")).to_have_text("1", timeout=WAIT_MS)
