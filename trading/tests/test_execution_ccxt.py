"""The order protocol (trading/execution/orders.py) through the REAL ccxt code paths.

A CcxtGateway (ccxt's own signing, request building and answer parsing) talks to the fake
Binance USDⓈ-M server on loopback (tests/support/fake_binance.py), and the faults of the issue
are injected there: a create_order whose answer is lost after / before the matching engine
took it, 5xx, 429/418 with Retry-After, margin and quantity rejections. Every assertion about
"how many orders" is made on the fake's side (the POST requests that reached it and the orders
it holds), not on our own bookkeeping.
"""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.support.fake_binance import FakeBinance

D = Decimal
EX = "binanceusdm"
BTC = "BTC/USDT:USDT"
ORDER_PATH = "/fapi/v1/order"
TIMEOUT_MS = 400  # per request; a "hang" answers after HANG_SECONDS, so the client times out
HANG_SECONDS = 1.2

pytestmark = pytest.mark.django_db


# --- setup ------------------------------------------------------------------------------------


def make_gateway(fake: FakeBinance, **kw):
    from trading.exchanges.ccxt_backend import CcxtGateway

    kw = {"urls": fake.base_url, "timeout_ms": TIMEOUT_MS, "rate_limit_ms": 1, "backoff_seconds": 0.01,
          "max_backoff_seconds": 0.05, "max_retry_after_seconds": 3.0, **kw}
    return CcxtGateway(EX, **kw)


@pytest.fixture
def world(fake, creds):
    """Symbols matching the fake's markets, a fast retry policy, the execution layer on a
    CcxtGateway against the fake, and the first-reconciliation gate closed."""
    from django.core.cache import cache

    from risk.services.policy import policy_invalidate, policy_update
    from trading.exchanges.account import use_gateway
    from trading.execution import orders
    from trading.models import Symbol

    cache.clear()
    policy_invalidate()
    policy_update(changes={"retry_delay_seconds": "0.05"}, updated_by="test", reason="fast tests")
    symbols = {}
    for spec in fake.markets.values():
        name = f"{spec.base}/{spec.quote}:{spec.quote}"
        symbols[name] = Symbol.objects.create(
            exchange=EX, symbol=name, base=spec.base, quote=spec.quote, settle=spec.quote, market_type="swap",
            sector="layer1", tick_size=D(spec.tick), lot_size=D(spec.step), min_notional=D(spec.min_notional))
    gateways = []

    def use(**kw):
        gw = make_gateway(fake, **kw)
        gateways.append(gw)
        use_gateway(gw)
        return gw

    gw = use()
    orders.reset_reconciled()
    orders._leverage_set.clear()  # a process-wide memo; each test has a fresh fake exchange
    yield {"fake": fake, "gateway": gw, "symbols": symbols, "use": use}
    use_gateway(None)
    orders.reset_reconciled()
    orders._leverage_set.clear()
    for g in gateways:
        g.close()
    cache.clear()
    policy_invalidate()


def new_order(world, key: str, *, amount: str = "0.01", side: str = "buy", leverage: int = 2, symbol: str = BTC):
    """An Order row recorded before sending, with the deterministic id of (key, slice 0)."""
    from trading.execution import planning
    from trading.models import Order

    return Order.objects.create(exchange=EX, client_order_id=planning.client_order_id(key, 0),
                                symbol=world["symbols"][symbol], side=side, type="market", amount=D(amount),
                                leverage=leverage, strategy="market")


def posts(fake: FakeBinance) -> list:
    return fake.requests_to(ORDER_PATH, "POST")


def lookups(fake: FakeBinance) -> list:
    return fake.requests_to(ORDER_PATH, "GET")


def results() -> list[dict]:
    from qtweb.events.models import Event

    return list(Event.objects.filter(type="execution.result").order_by("timestamp").values_list("payload", flat=True))


def assert_filled_once(fake: FakeBinance, order, amount: str = "0.01") -> None:
    """Our row is filled with the exchange's id; the fake holds exactly one order, with our id;
    one Fill and an open position follow from it."""
    from trading.models import Fill, Position

    order.refresh_from_db()
    held = fake.orders()
    assert len(held) == 1, held
    assert held[0]["clientOrderId"] == order.client_order_id and held[0]["status"] == "FILLED"
    assert order.status == "filled", order.status_reason
    assert order.exchange_order_id == str(held[0]["orderId"])
    assert order.filled == D(amount) and order.average_price == D(held[0]["avgPrice"])
    fill = Fill.objects.get(order=order)
    assert fill.amount == D(amount) and fill.price == D(held[0]["avgPrice"])
    pos = Position.objects.get(exchange=EX, status="open")
    assert pos.side == ("long" if order.side == "buy" else "short") and pos.amount == D(amount)
    filled_events = [r for r in results() if r["client_order_id"] == order.client_order_id]
    # one order-level result; when the order belongs to an intent that finished, one intent-level too
    assert [r["status"] for r in filled_events if not r["intent_complete"]] == ["filled"]
    assert [r["status"] for r in filled_events if r["intent_complete"]] in ([], ["filled"])


# --- 1. create_order times out, the order exists: found by clientOrderId, not resent ------------


def test_timeout_after_the_engine_took_the_order_is_found_by_client_order_id_not_resent(world, fake):
    from trading.execution.orders import order_submit

    order = new_order(world, "hang-executed")
    fake.inject(ORDER_PATH, "hang", method="POST", seconds=HANG_SECONDS)  # executed, answer lost
    started = time.monotonic()
    order_submit(order)
    elapsed = time.monotonic() - started

    sent = posts(fake)
    assert [p.params["newClientOrderId"] for p in sent] == [order.client_order_id]  # never resent
    looked = lookups(fake)
    assert looked and looked[0].params.get("origClientOrderId") == order.client_order_id
    assert "orderId" not in looked[0].params and looked[0].params["symbol"] == "BTCUSDT"
    assert looked[0].status == 200
    assert_filled_once(fake, order)
    order.refresh_from_db()
    assert order.submit_attempts == 1
    assert elapsed < HANG_SECONDS + 1.5, f"took {elapsed:.2f}s: the client timeout did not cut the hang"


# --- 2. create_order times out, the order does not exist: resent once with the same id ---------


def test_timeout_before_the_engine_resends_once_with_the_same_client_order_id(world, fake):
    from trading.execution.orders import order_submit

    order = new_order(world, "hang-lost")
    fake.inject(ORDER_PATH, "hang", method="POST", seconds=HANG_SECONDS, execute=False)
    order_submit(order)

    sent = posts(fake)
    assert len(sent) == 2
    assert {p.params["newClientOrderId"] for p in sent} == {order.client_order_id}
    looked = lookups(fake)  # the lookup between the two sends found nothing (-2013)
    assert len(looked) == 1 and looked[0].params["origClientOrderId"] == order.client_order_id
    assert looked[0].status == 400 and looked[0].at < sent[1].at
    assert_filled_once(fake, order)
    order.refresh_from_db()
    assert order.submit_attempts == 2


def test_two_lost_sends_stop_at_unknown_and_reconciliation_settles_it_without_a_third(world, fake):
    """The resend is ONCE: a second lost answer leaves the order `unknown` (never a third POST);
    reconciliation then looks it up and closes it, since the exchange has no such order."""
    from trading.execution.orders import order_submit
    from trading.execution.reconciliation import reconcile

    order = new_order(world, "hang-lost-twice")
    fake.inject(ORDER_PATH, "hang", method="POST", seconds=HANG_SECONDS, execute=False, times=2)
    order_submit(order)
    order.refresh_from_db()
    assert order.status == "unknown" and "twice" in order.status_reason
    assert len(posts(fake)) == 2 and fake.orders() == []

    run = reconcile(reason="test")  # just sent: not judged yet (an exchange may list it late)
    order.refresh_from_db()
    assert run.ok and order.status == "unknown" and run.mismatches[0]["kind"] == "order_not_found_yet"
    from datetime import timedelta

    from django.utils import timezone

    from trading.models import Order

    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    run = reconcile(reason="test")
    assert run.ok, run.error
    order.refresh_from_db()
    assert order.status == "rejected" and "no such order" in order.status_reason
    assert len(posts(fake)) == 2 and fake.orders() == []


def test_unknown_outcome_when_the_lookup_fails_too_is_settled_later_by_the_lookup(world, fake):
    """Answer lost after execution and the lookup unreachable: `unknown`, not resent. The next
    reconciliation finds the order by clientOrderId and applies the fill: still one order."""
    from trading.execution.orders import order_submit
    from trading.execution.reconciliation import reconcile

    order = new_order(world, "hang-then-lookup-down")
    fake.inject(ORDER_PATH, "hang", method="POST", seconds=HANG_SECONDS)
    fake.inject(ORDER_PATH, "5xx", method="GET", status=503, times=world["gateway"].max_tries)
    order_submit(order)
    order.refresh_from_db()
    assert order.status == "unknown" and "lookup by clientOrderId failed" in order.status_reason
    assert len(posts(fake)) == 1 and len(fake.orders()) == 1

    run = reconcile(reason="test")
    assert run.ok, run.error
    assert any(m["kind"] == "missed_fill" for m in run.mismatches)
    assert_filled_once(fake, order)
    assert len(posts(fake)) == 1


# --- 3. rate limits: wait at least Retry-After, or hand the wait to the task layer -----------------


def test_short_retry_after_on_create_is_waited_then_placed_once(world, fake):
    """The gateway retries a 429 on create_order (the exchange refused it: nothing placed)
    after sleeping at least Retry-After, measured on the fake's clock between the two POSTs."""
    from trading.execution.orders import order_submit

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    world["use"](sleep=sleep)
    order = new_order(world, "429-short")
    fake.inject(ORDER_PATH, "429", method="POST", retry_after=0.3)
    order_submit(order)

    sent = posts(fake)
    assert len(sent) == 2 and {p.params["newClientOrderId"] for p in sent} == {order.client_order_id}
    assert sent[0].status == 429 and sent[1].status == 200
    assert slept and slept[-1] >= 0.3
    assert sent[1].at - sent[0].at >= 0.3
    assert_filled_once(fake, order)


@pytest.mark.parametrize("kind", ["429", "418"])
def test_short_retry_after_seen_by_order_submit_is_waited_with_its_sleep(world, fake, kind):
    """Same, with a gateway that does not retry writes itself (max_tries=1): order_submit's own
    wait honours Retry-After (the sleep it is given records the value, and really waits)."""
    from trading.execution.orders import order_submit

    world["use"](max_tries=1)
    order = new_order(world, f"{kind}-short-submit")
    fake.inject(ORDER_PATH, kind, method="POST", retry_after=0.25)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    order_submit(order, sleep=sleep)
    sent = posts(fake)
    assert [p.status for p in sent] == [int(kind), 200]
    assert len(slept) == 1 and slept[0] >= 0.25
    assert sent[1].at - sent[0].at >= 0.25
    assert_filled_once(fake, order)


@pytest.mark.parametrize("kind", ["429", "418"])
def test_long_retry_after_raises_execution_retry_and_a_later_call_places_once(world, fake, kind):
    from trading.execution.orders import ExecutionRetry, order_submit

    order = new_order(world, f"{kind}-long")
    fake.inject(ORDER_PATH, kind, method="POST", retry_after=30)
    slept: list[float] = []
    started = time.monotonic()
    with pytest.raises(ExecutionRetry) as info:
        order_submit(order, sleep=slept.append)
    assert time.monotonic() - started < 5, "a 30 s Retry-After must not block the worker"
    assert info.value.delay_seconds >= 30
    assert slept == []
    order.refresh_from_db()
    assert order.status == "pending" and order.submit_attempts == 1  # nothing lost, nothing placed
    assert len(posts(fake)) == 1 and fake.orders() == []
    assert results() == []

    # The task retries later (the fault has cleared): looked up first (attempts > 0), not
    # found, sent once; a further call changes nothing.
    order_submit(order)
    order_submit(order)
    sent = posts(fake)
    assert len(sent) == 2 and {p.params["newClientOrderId"] for p in sent} == {order.client_order_id}
    assert lookups(fake)[0].params["origClientOrderId"] == order.client_order_id
    assert_filled_once(fake, order)


def test_the_configured_execution_gateway_hands_a_long_retry_after_to_the_task(world, fake, settings):
    """The gateway the execution layer builds from settings (not this file's test gateway):
    a 30 s Retry-After on create_order must become ExecutionRetry, not a worker blocked inside
    the gateway's own rate-limit retry."""
    from trading.exchanges.account import MAX_INLINE_WAIT_SECONDS, execution_gateway, use_gateway
    from trading.exchanges.ccxt_backend import CcxtGateway
    from trading.execution.orders import ExecutionRetry, order_submit

    settings.EXECUTION_EXCHANGE = EX
    settings.EXCHANGE_BASE_URL = fake.base_url
    settings.EXCHANGE_TIMEOUT_MS = TIMEOUT_MS
    use_gateway(None)
    gw = execution_gateway()
    assert isinstance(gw, CcxtGateway) and gw._exchange.urls["api"]["fapiPrivate"].startswith(fake.base_url)
    slept: list[float] = []
    gw._sleep = slept.append  # record the gateway's waits instead of blocking this test
    try:
        order = new_order(world, "429-configured")
        fake.inject(ORDER_PATH, "429", method="POST", retry_after=30)
        with pytest.raises(ExecutionRetry) as info:
            order_submit(order, sleep=slept.append)
        assert info.value.delay_seconds >= 30
        assert all(s <= MAX_INLINE_WAIT_SECONDS for s in slept), slept
        order.refresh_from_db()
        assert order.status == "pending" and len(posts(fake)) == 1 and fake.orders() == []
    finally:
        gw.close()


# --- 4. 5xx on create: outcome unknown -> lookup -> the right action ------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_create_not_executed_is_looked_up_then_resent_once(world, fake, status):
    from trading.execution.orders import order_submit

    order = new_order(world, f"5xx-lost-{status}")
    fake.inject(ORDER_PATH, "5xx", method="POST", status=status)
    order_submit(order)
    sent = posts(fake)
    assert [p.status for p in sent] == [status, 200]
    assert {p.params["newClientOrderId"] for p in sent} == {order.client_order_id}
    looked = lookups(fake)
    assert len(looked) == 1 and looked[0].status == 400 and sent[0].at < looked[0].at < sent[1].at
    assert_filled_once(fake, order)


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_on_create_executed_is_found_by_the_lookup_not_resent(world, fake, status):
    from trading.execution.orders import order_submit

    order = new_order(world, f"5xx-executed-{status}")
    fake.inject(ORDER_PATH, "5xx", method="POST", status=status, execute=True)
    order_submit(order)
    sent = posts(fake)
    assert [p.status for p in sent] == [status]
    looked = lookups(fake)
    assert len(looked) == 1 and looked[0].status == 200
    assert looked[0].params["origClientOrderId"] == order.client_order_id
    assert_filled_once(fake, order)


# --- 5./6. rejections: recorded with the exchange's reason, never retried ----------------------


def assert_rejected(fake: FakeBinance, order, *reason_parts: str) -> None:
    from trading.models import Fill, Position

    order.refresh_from_db()
    assert order.status == "rejected"
    for part in reason_parts:
        assert part.lower() in order.status_reason.lower(), order.status_reason
    assert len(posts(fake)) == 1, "a rejection must not be retried"
    assert fake.orders() == []
    assert not Fill.objects.filter(order=order).exists() and not Position.objects.exists()
    events = [r for r in results() if r["client_order_id"] == order.client_order_id]
    assert len(events) == 1 and events[0]["status"] == "rejected"
    assert events[0]["reason"] == order.status_reason[:500] and D(events[0]["filled_amount"]) == 0


def test_insufficient_margin_on_the_exchange_rejects_with_the_reason(world, fake):
    """4 BTC (~240k USD) at 1x against a 10k USDT wallet: the fake's own margin check refuses
    it with -2019, whatever leverage the fake holds."""
    from trading.execution.orders import order_submit

    order = new_order(world, "no-margin", amount="4", leverage=1)
    order_submit(order)
    assert posts(fake)[0].status == 400
    assert_rejected(fake, order, "InsufficientFunds", "margin is insufficient")


@pytest.mark.parametrize(("code", "expected"), [
    (-2019, ("InsufficientFunds", "Margin is insufficient")),
    (-2010, ("InsufficientFunds", "insufficient balance")),
])
def test_injected_insufficient_funds_codes_reject_without_retry(world, fake, code, expected):
    from trading.execution.orders import order_submit

    order = new_order(world, f"funds{code}")
    fake.inject(ORDER_PATH, "binance", method="POST", code=code)
    order_submit(order)
    assert_rejected(fake, order, *expected)


@pytest.mark.parametrize(("code", "expected"), [
    (-1013, "Invalid quantity"),
    (-4003, "Quantity less than or equal to zero"),
])
def test_invalid_quantity_codes_reject_without_retry(world, fake, code, expected):
    from trading.execution.orders import order_submit

    order = new_order(world, f"qty{code}")
    fake.inject(ORDER_PATH, "binance", method="POST", code=code)
    order_submit(order)
    assert_rejected(fake, order, "InvalidOrder", expected)


def test_an_amount_below_min_notional_is_refused_by_the_exchange_and_rejected(world, fake):
    """0.001 BTC (~60 USD) is one lot but below BTCUSDT's 100 USD minimum notional: the fake's
    own filter refuses it (-4164)."""
    from trading.execution.orders import order_submit

    order = new_order(world, "tiny", amount="0.001")
    order_submit(order)
    assert posts(fake)[0].params["quantity"] == "0.001"
    assert_rejected(fake, order, "InvalidOrder", "notional must be no smaller than 100")


# --- 7. the same intent twice: one order on the exchange ---------------------------------------


def _reference_price(fake: FakeBinance, symbol: str = BTC, exchange_symbol: str = "BTCUSDT") -> Decimal:
    from django.conf import settings

    from trading.marketdata.cache import store_latest
    from trading.marketdata.reference import mark_feed_ok
    from trading.marketdata.timeframes import seconds

    price = float(fake.last_price(exchange_symbol))  # what the fake fills a market order at
    tf = settings.UNIVERSE_TIMEFRAME
    step_ms = int(seconds(tf) * 1000)
    now_ms = int(time.time() * 1000)
    store_latest(EX, tf, {symbol: [now_ms - now_ms % step_ms, price, price, price, price, 100]})
    mark_feed_ok(EX)
    return D(repr(price))


def _manual(key: str, amount: str = "0.01"):
    from trading.execution.services import intent_create

    return intent_create(key=key, source="manual", symbol=BTC, side="buy", amount=D(amount), leverage=2,
                         strategy="market")


def test_the_same_intent_twice_places_one_order_with_its_deterministic_id(world, fake):
    from trading.execution import planning
    from trading.execution.services import intent_process
    from trading.execution.services.intents import _place
    from trading.models import Order

    _reference_price(fake)
    intent, created = _manual("dup-intent")
    assert created
    first = intent_process(intent.pk)
    assert first.status == "done", first.reason
    again, created_again = _manual("dup-intent")  # a re-delivery finds its intent
    assert not created_again and again.pk == intent.pk
    intent_process(again.pk)
    first.refresh_from_db()
    _place(first, first.plan[0], world["gateway"])  # even placing the slice again directly

    cid = planning.client_order_id("dup-intent", 0)
    assert [p.params["newClientOrderId"] for p in posts(fake)] == [cid]
    order = Order.objects.get()
    assert order.client_order_id == cid and order.intent_id == intent.pk
    assert_filled_once(fake, order)


def test_an_intent_whose_answer_was_lost_is_settled_on_the_next_run_without_a_second_order(world, fake):
    """The first run sends, loses the answer and cannot look it up (`unknown`); the intent's
    next run (re-delivery / sweep) looks the order up by clientOrderId and finishes: one order."""
    from trading.execution.services import intent_advance, intent_process
    from trading.models import Order

    _reference_price(fake)
    intent, _ = _manual("lost-intent")
    fake.inject(ORDER_PATH, "hang", method="POST", seconds=HANG_SECONDS)
    fake.inject(ORDER_PATH, "5xx", method="GET", status=502, times=world["gateway"].max_tries)
    first = intent_process(intent.pk)
    order = Order.objects.get()
    assert order.status == "unknown" and first.status == "working"

    again, _ = _manual("lost-intent")
    intent_process(again.pk)
    done = intent_advance(intent.pk)
    done.refresh_from_db()
    assert done.status == "done" and done.filled_amount == D("0.01")
    assert len(posts(fake)) == 1 and Order.objects.count() == 1
    assert_filled_once(fake, order)


# --- the first-reconciliation gate ---------------------------------------------------------------


@pytest.mark.parametrize("outage", ["5xx", "down"])
def test_no_order_leaves_before_the_first_reconciliation_succeeds(world, fake, outage):
    from trading.execution.orders import ExecutionRetry, order_submit
    from trading.models import ReconciliationRun

    order = new_order(world, f"gate-{outage}")
    if outage == "5xx":  # every try of the reconciliation's open-orders read fails
        fake.inject("/fapi/v1/openOrders", "5xx", status=503, times=world["gateway"].max_tries)
    else:
        fake.stop()
    with pytest.raises(ExecutionRetry, match="reconciliation has not succeeded"):
        order_submit(order)
    assert posts(fake) == [] and fake.requests_to("/fapi/v1/leverage") == []
    order.refresh_from_db()
    assert order.status == "pending" and order.submit_attempts == 0
    run = ReconciliationRun.objects.get()
    assert not run.ok and run.error
    if outage == "down":
        return

    assert len(fake.requests_to("/fapi/v1/openOrders")) == world["gateway"].max_tries
    order_submit(order)  # the exchange answers again: reconciled, then sent once
    assert ReconciliationRun.objects.filter(ok=True).count() == 1
    assert len(posts(fake)) == 1
    assert_filled_once(fake, order)
