"""The dashboard's risk panel in a real browser: daphne (HTTP + Channels) on the test database,
headless Chromium. A staff user presses Emergency stop with a reason and the mode shown turns
HALTED without a reload, carried by the system.mode_changed event over the websocket; the open
positions table re-reads itself on position.opened.

Needs /usr/bin/chromium (`make browser` installs it), PostgreSQL and Redis. The fixtures (daphne,
browser) and helpers are those of tests/test_dashboard_browser.py.
"""
from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests import test_dashboard_browser as dashboard_browser
from tests.test_dashboard_browser import CHROMIUM, WAIT_MS, off_loop

# The real daphne server and headless Chromium of the dashboard's browser tests (this module gets
# its own daphne: the fixture is module-scoped).
daphne_url = dashboard_browser.daphne_url
browser = dashboard_browser.browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not installed (run `make browser`; never `playwright install`)"),
]

PASSWORD = "risk-pass-9876"


def _reset_caches():
    """The mode and policy caches are in Redis, shared with daphne and earlier tests."""
    from risk.services.policy import policy_invalidate
    from tests.support.execution import clear_app_cache

    clear_app_cache()
    policy_invalidate()


def _user(username: str, *, staff: bool):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username, password=PASSWORD, is_staff=staff)


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/", timeout=WAIT_MS)


def test_staff_emergency_stop_turns_the_mode_halted_live(daphne_url, paused_workers, browser):
    from playwright.sync_api import expect

    off_loop(_reset_caches)
    off_loop(_user, "riskop", staff=True)

    page = browser.new_page(viewport={"width": 1200, "height": 800})
    login(page, daphne_url, "riskop")
    mode = page.locator("#risk-mode")
    expect(mode).to_have_text("NORMAL", timeout=WAIT_MS)
    expect(mode).to_have_attribute("data-mode", "NORMAL")
    expect(page.locator("#ws-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    expect(page.locator("#positions-empty")).to_be_visible()

    page.evaluate("window.__notReloaded = true")
    # No reason: refused in the page, nothing sent.
    page.click("#estop-button")
    expect(page.locator("#estop-result")).to_have_attribute("data-state", "error")
    expect(mode).to_have_text("NORMAL")

    reason = f"browser drill {uuid.uuid4().hex[:6]}"
    page.fill("#estop-reason", reason)
    page.click("#estop-button")
    expect(page.locator("#estop-result")).to_have_attribute("data-state", "ok", timeout=WAIT_MS)
    expect(page.locator("#estop-result")).to_contain_text("HALTED")
    # The mode changes from the websocket's system.mode_changed (the page only re-reads the API
    # itself if no event came within 5 s, and then marks the source "api").
    expect(mode).to_have_text("HALTED", timeout=WAIT_MS)
    expect(mode).to_have_attribute("data-source", "event")
    expect(page.locator("#risk-mode-detail")).to_contain_text(reason)
    assert page.evaluate("window.__notReloaded") is True, "the page reloaded"

    def recorded():
        from qtweb.events.models import Event
        from risk.models import ModeChange

        rows = list(ModeChange.objects.values_list("mode", "changed_by", "by_operator"))
        stops = list(Event.objects.filter(type="emergency.stop").values_list("payload", flat=True))
        return rows, stops

    rows, stops = off_loop(recorded)
    assert rows == [("HALTED", "riskop", True)]
    assert len(stops) == 1 and stops[0]["reason"] == reason and stops[0]["triggered_by"] == "riskop"

    # Pressing it again repeats nothing and says so.
    page.fill("#estop-reason", "pressed twice")
    page.click("#estop-button")
    expect(page.locator("#estop-result")).to_contain_text("already HALTED", timeout=WAIT_MS)
    assert off_loop(recorded)[0] == rows
    page.screenshot(path="/tmp/dashboard-risk.png", full_page=True)


def test_positions_table_follows_position_events_and_viewers_get_no_stop_button(daphne_url, paused_workers,
                                                                                 browser):
    from playwright.sync_api import expect

    from qtweb.events.bus import publish

    def seed():
        from trading.exchanges.account import exchange_id
        from trading.models import Position, Symbol

        exchange = exchange_id()
        syms = {}
        for base in ("BTC", "ETH"):
            syms[base] = Symbol.objects.create(exchange=exchange, symbol=f"{base}/USDT:USDT", base=base, quote="USDT",
                                               settle="USDT", market_type="swap", tick_size=Decimal("0.01"),
                                               lot_size=Decimal("0.001"))
        btc = Position.objects.create(exchange=exchange, symbol=syms["BTC"], side="long", amount=Decimal("0.05"),
                                      entry_price=Decimal("60000"), leverage=3, opened_at=datetime.now(UTC))
        from analytics.models import PositionAssessment

        PositionAssessment.objects.create(position_id=btc.pk, symbol="BTC/USDT:USDT", label="at_risk", score=-0.35,
                                          pnl_pct=Decimal("3"), reasons=["the signal reversed to short"],
                                          assessed_at=datetime.now(UTC))
        return exchange, syms["ETH"].pk

    off_loop(_reset_caches)
    off_loop(_user, "watcher", staff=False)
    exchange, eth_id = off_loop(seed)

    page = browser.new_page()
    login(page, daphne_url, "watcher")
    expect(page.locator("#risk-mode")).to_have_text("NORMAL", timeout=WAIT_MS)
    assert page.locator("#estop-form").count() == 0  # not staff: no stop button
    rows = page.locator("#positions-body tr")
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    expect(rows.first).to_have_attribute("data-symbol", "BTC/USDT:USDT")
    expect(rows.first.locator(".col-amount")).to_have_text("0.05")
    expect(rows.first.locator(".col-leverage")).to_have_text("3")
    intel = rows.first.locator(".col-intelligence")
    expect(intel).to_have_text("at risk -0.35")
    expect(intel).to_have_attribute("title", "the signal reversed to short")
    expect(page.locator("#positions-empty")).to_be_hidden()
    expect(page.locator("#ws-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    page.evaluate("window.__notReloaded = true")

    def open_eth():
        from trading.models import Position

        pos = Position.objects.create(exchange=exchange, symbol_id=eth_id, side="short", amount=Decimal("1.5"),
                                      entry_price=Decimal("3000"), leverage=2, opened_at=datetime.now(UTC))
        publish("position.opened", {"position_id": str(pos.pk), "symbol": "ETH/USDT:USDT", "side": "short",
                                    "amount": "1.5", "entry_price": "3000", "leverage": 2})

    off_loop(open_eth)
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator('#positions-body tr[data-symbol="ETH/USDT:USDT"]')).to_have_attribute("data-side", "short")
    eth_intel = page.locator('#positions-body tr[data-symbol="ETH/USDT:USDT"] .col-intelligence')
    expect(eth_intel).to_have_attribute("title", "not classified yet")
    assert page.evaluate("window.__notReloaded") is True, "the page reloaded"
