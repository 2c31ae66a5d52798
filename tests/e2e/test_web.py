"""The web pages in a real browser (Debian's chromium, driven by Playwright) against the whole platform:
two traders cross through the order ticket, the operator page watches the services and replays a dead
letter. Screenshots go to .cache/screenshots/; first paint and the update rate are printed."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from orderstream.client import GatewayClient
from tests.kafka_tools import ROOT, eventually

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHART_JS = ROOT / "services/orderstream/gateway/static/vendor/lightweight-charts.standalone.production.js"
SHOTS = ROOT / ".cache" / "screenshots"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """Chromium from the system's packages (no browser download); the tests skip without it."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    assert CHART_JS.exists(), "the chart library is missing: make web (make install and make test fetch it)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        await chromium.close()


async def open_page(browser: Any, url: str, key_id: str, secret: str) -> Any:
    """A new browser context (its own sessionStorage) logged in through the page's form."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    await page.goto(url)
    await page.fill("#login [name=key_id]", key_id)
    await page.fill("#login [name=secret]", secret)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#screen", state="visible")
    return page


def creds(platform: dict[str, Any], who: str) -> tuple[str, str]:
    c = platform["creds"]["admin"] if who == "admin" else platform["creds"]["accounts"][who]
    return c["key_id"], c["secret"]


async def place(page: Any, side: str, quantity: str, price: str | None, order_type: str = "LIMIT") -> str:
    """An order through the ticket; its order id as the page reports it."""
    await page.check(f"#ticket [name=side][value={side}]")
    await page.select_option("#ticket [name=order_type]", order_type)
    await page.fill("#ticket [name=quantity]", quantity)
    if price is not None:
        await page.fill("#ticket [name=price]", price)
    await page.click("#place")
    status = page.locator("#ticket-status")
    await status.filter(has_text="placed").or_(status.filter(has_text="4")).wait_for()
    text = await status.text_content()
    assert text.startswith("placed "), text
    return str(text.removeprefix("placed "))


async def balances(page: Any) -> dict[str, D]:
    """Free + held per asset as the page shows them."""
    rows = await page.eval_on_selector_all(
        "#balances tbody tr",
        "rows => rows.map(r => [r.dataset.asset, r.querySelector('.free').textContent,"
        " r.querySelector('.held').textContent])",
    )
    return {asset: D(free) + D(held) for asset, free, held in rows}


async def until(what: str, check: Any, timeout_s: float = 60) -> Any:
    return await eventually(what, check, timeout_s, interval=0.25)


async def test_two_traders_cross_through_the_ticket_and_see_it_everywhere(
    browser: Any, platform: dict[str, Any]
) -> None:
    base = platform["base"]
    alice = await open_page(browser, base + "/", *creds(platform, "alice"))
    bob = await open_page(browser, base + "/", *creds(platform, "bob"))
    for page in (alice, bob):
        await page.locator("#conn", has_text="live").wait_for()
        await page.locator("#balances tbody tr[data-asset=USD]").wait_for()
        assert await page.input_value("#symbol") == "BTC-USD"
    before = {"a": await balances(alice), "b": await balances(bob)}

    sell = await place(alice, "SELL", "0.5", "31000")
    row = alice.locator(f'#open tr[data-order-id="{sell}"]')
    await row.wait_for()
    await row.locator("td", has_text="ACCEPTED").wait_for()
    await bob.locator("#asks tr", has_text="31000").wait_for()  # the book of the other trader shows it
    buy = await place(bob, "BUY", "0.5", "31000")

    for page in (alice, bob):  # the trade in the tape, the candle, the fill in history
        await page.locator("#tape tbody tr", has_text="31000").wait_for()
        await page.locator("#candle", has_text="C 31000").wait_for()
        assert int(await page.get_attribute("#chart", "data-candles")) >= 1
    await alice.locator(f'#history tr[data-order-id="{sell}"]', has_text="FILLED").wait_for()
    await bob.locator(f'#history tr[data-order-id="{buy}"]', has_text="FILLED").wait_for()
    await row.wait_for(state="detached")  # no longer open
    await alice.locator("#positions tr[data-symbol=BTC-USD]").wait_for()

    # Balances: exactly the fill, minus the fees (maker 0.1 %, taker 0.2 %, in USD).
    want = {
        "a": {"BTC": before["a"]["BTC"] - D("0.5"), "USD": before["a"]["USD"] + D(15500) - D("15.5")},
        "b": {"BTC": before["b"]["BTC"] + D("0.5"), "USD": before["b"]["USD"] - D(15500) - D(31)},
    }

    async def settled() -> bool:
        now = {"a": await balances(alice), "b": await balances(bob)}
        return all(now[w][asset] == v for w in want for asset, v in want[w].items())

    await until("balances moved by the fill minus fees", settled)

    # Replace, then cancel, an order that rests.
    resting = await place(alice, "BUY", "0.1", "20000")
    row = alice.locator(f'#open tr[data-order-id="{resting}"]')
    await row.locator("td", has_text="ACCEPTED").wait_for()
    await row.locator("button.replace").click()
    await row.locator("input[name=price]").fill("20500")
    await row.locator("button", has_text="send").click()
    await row.locator("td", has_text="20500").wait_for()
    await row.locator("button.cancel").click()
    await row.wait_for(state="detached")
    await alice.locator(f'#history tr[data-order-id="{resting}"]', has_text="CANCELED").wait_for()

    # A field the gateway refuses: its error is shown at the field.
    await alice.fill("#ticket [name=quantity]", "-1")
    await alice.click("#place")
    error = alice.locator('#ticket label[data-field=quantity] .field-error')
    await error.wait_for()
    assert "decimal string" in await error.text_content()
    assert "40001" in await alice.text_content("#ticket-status")
    await alice.fill("#ticket [name=quantity]", "0.1")
    await alice.fill("#ticket [name=price]", "20000.3")  # off the tick size: 40011 at the price
    await alice.click("#place")
    await alice.locator('#ticket label[data-field=price] .field-error').wait_for()

    await alice.screenshot(path=str(SHOTS / "trading.png"), full_page=True)
    assert alice.errors == [] and bob.errors == [], (alice.errors, bob.errors)

    # First paint of the trading screen, logged in (sessionStorage keeps the key): a reload.
    await alice.reload()
    await alice.locator("#conn", has_text="live").wait_for()
    paint = await alice.evaluate(
        "() => ({fcp: osStats.firstPaintMs, dcl: performance.getEntriesByType('navigation')[0]"
        ".domContentLoadedEventEnd, load: performance.getEntriesByType('navigation')[0].loadEventEnd})"
    )
    print(f"\nfirst paint of / (logged in, local gateway): first-contentful-paint {paint['fcp']:.0f} ms, "
          f"DOMContentLoaded {paint['dcl']:.0f} ms, load {paint['load']:.0f} ms")
    assert paint["fcp"] is not None and paint["fcp"] < 1000, paint
    await alice.context.close()
    await bob.context.close()


async def test_the_screen_keeps_up_with_20_book_and_trade_updates_a_second(
    browser: Any, platform: dict[str, Any]
) -> None:
    page = await open_page(browser, platform["base"] + "/", *creds(platform, "alice"))
    await page.locator("#conn", has_text="live").wait_for()
    await page.evaluate("() => { osStats.market = 0; osStats.lagMs = []; osStats.frames = 0; }")
    traders = [GatewayClient(platform["base"], *creds(platform, w)) for w in ("alice", "bob")]
    seconds, pairs = 10.0, 0
    async with (
        aiohttp.ClientSession() as http, traders[0].session(http) as sa, traders[1].session(http) as sb
    ):
        started, sent = time.monotonic(), []
        while time.monotonic() - started < seconds:  # paced, not waiting for answers (they pipeline)
            for session, side in ((sa, "SELL"), (sb, "BUY")):  # each pair: a book change, a trade, one more
                sent.append(asyncio.ensure_future(session.call(
                    "order.place", {"client_order_id": f"r-{uuid.uuid4().hex[:10]}", "symbol": "BTC-USD",
                                    "side": side, "quantity": "0.001", "price": "30000"})))
            pairs += 1
            await asyncio.sleep(max(0.0, started + pairs * 0.1 - time.monotonic()))
        sent_for = time.monotonic() - started
        await asyncio.gather(*sent)
    await asyncio.sleep(3)  # the last ones through the chain
    got = await page.evaluate("() => ({market: osStats.market, frames: osStats.frames, lag: osStats.lagMs})")
    lag = sorted(got["lag"])
    rate = got["market"] / sent_for
    p50, p99 = statistics.median(lag), lag[int(len(lag) * 0.99) - 1]
    print(f"\nupdate rate: {pairs} crossing pairs in {sent_for:.1f} s; the page applied {got['market']} "
          f"market updates (book, trades, ticker, candles) = {rate:.1f}/s in {got['frames']} frames; "
          f"record-to-page latency p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    assert rate >= 20, got["market"]
    assert await page.text_content("#conn") == "live"  # never dropped as a slow consumer
    assert p50 < 1000, (p50, p99)
    assert page.errors == []
    await page.context.close()


async def test_the_operator_page_shows_the_services_and_replays_a_dead_letter(
    browser: Any, platform: dict[str, Any]
) -> None:
    page = await open_page(browser, platform["base"] + "/ops", *creds(platform, "admin"))
    await until("six services ok", lambda: _count_is(page, "#services td.status.ok", 6), 90)
    await page.locator("#lag tr[data-service=collateral]").wait_for()

    # A dead letter: a record collateral cannot decode, dead-lettered by it to collateral.commands.dlq.
    prefix = platform["env"]["ORDERSTREAM_TOPIC_PREFIX"]
    producer = AIOKafkaProducer(bootstrap_servers=platform["env"]["KAFKA_BOOTSTRAP_SERVERS"], acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(prefix + "collateral.commands", b"not avro", key=b"alice")
    finally:
        await producer.stop()
    dlq = page.locator('#dlq tr[data-topic="collateral.commands.dlq"]')
    await dlq.locator("td.not-replayed", has_text="1").wait_for()
    await page.screenshot(path=str(SHOTS / "ops.png"), full_page=True)
    await dlq.locator("button.replay").click()
    await page.locator("#replayed", has_text="replayed 1").wait_for()
    assert f"-> {prefix}collateral.commands" in await page.text_content("#replayed")
    # Sent back, collateral meets it again and dead-letters it again: the replay reached the service.
    await dlq.locator("td.records", has_text="2").wait_for()

    # Kill switch engaged and released; an account created and funded.
    await page.fill("#kill [name=target]", "ETH-USD")
    await page.fill("#kill [name=reason]", "browser test")
    await page.click("#kill button[name=engage]")
    await page.locator("#switches li", has_text="engaged SYMBOL ETH-USD").wait_for()
    await page.click("#kill button[name=release]")
    await page.locator("#switches li", has_text="released SYMBOL ETH-USD").wait_for()
    account = f"web{uuid.uuid4().hex[:6]}"
    await page.fill("#account [name=account_id]", account)
    await page.click("#account button[type=submit]")
    await page.locator("#created", has_text=f"account {account}").wait_for()
    await page.fill("#deposit [name=account_id]", account)
    await page.fill("#deposit [name=amount]", "100")
    await page.click("#deposit button[type=submit]")
    await page.locator("#deposited", has_text="sent").wait_for()
    await page.locator("#rate[data-last]").wait_for(state="attached")
    await page.screenshot(path=str(SHOTS / "ops.png"), full_page=True)
    assert page.errors == []
    await page.context.close()


async def _count_is(page: Any, selector: str, n: int) -> bool:
    return bool(await page.locator(selector).count() == n)


def test_screenshots_were_saved() -> None:
    """What docs/operations.md shows (docs/screenshots/ holds a copy of one run's)."""
    for name in ("trading.png", "ops.png"):
        path: Path = SHOTS / name
        if not path.exists():
            pytest.skip("the browser tests did not run")
        assert path.stat().st_size > 10_000, name
