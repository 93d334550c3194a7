"""The orchestrator with real workers, PostgreSQL, Redis and the paper exchange.

Positions are opened through the execution worker (manual orders). The orchestrator's pass runs in
this process with the caps each test sets, or on the ops worker (after position.opened); what it
publishes is carried out by the real execution worker through the risk path. A profitable position
is made by lowering its recorded entry price, and a current signal by storing a signal.generated
event without dispatching it (a published one would also be sized and traded by the AI path).
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from qtweb import rpc
from qtweb.events.bus import publish, wait_until_handled
from qtweb.events.models import Event
from tests.support.execution import build_market
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

D = Decimal
BTC, ETH, DOGE = "BTC/USDT:USDT", "ETH/USDT:USDT", "DOGE/USDT:USDT"


@pytest.fixture
def market(celery_workers, settings):
    # The layers are off by default (the ablation found none helps); these tests are about them
    # working when an operator turns them on. The ops worker keeps the defaults.
    settings.PBA_ENABLED = settings.PAL_ENABLED = settings.PIL_ENABLED = True
    market = build_market()
    rpc.call("exec-risk", "reload_gateway", timeout=10, retries=1)
    yield market
    from trading.exchanges.account import use_gateway

    use_gateway(None)


def _open(symbol: str, amount: str, cid: str):
    """Open a long through the execution worker, and wait for the pass its position.opened sets off on
    the ops worker (with that worker's default settings) to finish before the test changes anything."""
    from analytics.models import HfosDecision
    from trading.models import Position

    publish("execution.request", {"client_order_id": cid, "symbol": symbol, "side": "buy", "order_type": "market",
                                  "amount": amount})
    pos = wait_for(lambda: Position.objects.filter(symbol__symbol=symbol, status="open").first(), timeout=30)
    assert pos is not None, f"{symbol} did not open"
    assert wait_for(lambda: HfosDecision.objects.filter(trigger=f"position.opened {symbol}").exists(), timeout=40)
    _lock_free()
    return pos


def _lock_free():
    from django.core.cache import cache

    from analytics.orchestration.service import _LOCK_KEY

    assert wait_for(lambda: cache.get(_LOCK_KEY) is None, timeout=30), "an orchestration pass holds the lock"


def _healthy_graph():
    """The health graph as the monitor would store it, once every worker's heartbeat is back (the
    market fixture clears the cache they live in): with a service CRITICAL, HFOS blocks new risk."""
    from analytics.health import graph as health_graph

    def built():
        g = health_graph.build()
        health_graph.summarize(g)
        return g if all(s["status"] != "CRITICAL" for s in g["services"].values()) else None

    g = wait_for(built, timeout=30, poll=1)
    assert g, "a service stayed CRITICAL"
    health_graph.store(g)
    return g


def _snapshot_fresh():
    from trading.snapshots import snapshot_get

    assert wait_for(lambda: snapshot_get("paper") is not None, timeout=20), "execution wrote no account snapshot"


def _make_profitable(pos, pct: str = "8"):
    """Record the entry `pct` % below the mark, so the position is that much in profit."""
    from trading.models import Position

    mark = pos.mark_price or pos.entry_price
    Position.objects.filter(pk=pos.pk).update(entry_price=(mark / (1 + D(pct) / 100)).quantize(D("0.01")),
                                              mark_price=mark)


def _current_signal(symbol: str, action: str = "BUY"):
    import uuid

    Event.objects.create(event_id=uuid.uuid4(), type="signal.generated", version=1, trace_id="trace-sig-" + symbol,
                         source="test", timestamp=timezone.now(),
                         payload={"symbol": symbol, "timeframe": "5m", "action": action, "confidence": 0.8,
                                  "score": 0.6, "ensemble_agreement": 1.0, "models_voted": 4})


def _sector_exposure(sector: str) -> Decimal:
    from trading.models import Position

    return sum((p.notional_usd for p in Position.objects.filter(status="open", symbol__sector=sector)), D(0))


def _pass(trigger="test", include_pba=True):
    from analytics.orchestration.service import run_exclusively

    _lock_free()
    return run_exclusively(trigger, include_pba=include_pba)


def test_an_over_concentrated_sector_is_reduced_through_risk_to_its_cap_once(market, settings):
    from analytics.models import HfosDirective
    from trading.models import ExecutionIntent, Order

    settings.PBA_MAX_SECTOR_EXPOSURE_PCT = "8"
    settings.PAL_ENABLED = False
    _open(BTC, "0.1", "pba-btc")
    _open(ETH, "2", "pba-eth")
    _snapshot_fresh()
    _healthy_graph()
    before = _sector_exposure("layer1")
    assert before > 10_000  # ~12 % of the 100,000 USDT account: over the 8 % cap
    from django.db import transaction

    with transaction.atomic():  # the first pass's event is sent on commit: the second surely runs before it fills
        first = _pass()
        second = _pass()
    reduces = HfosDirective.objects.filter(layer="pba", kind="reduce", outcome="accepted")
    assert {d.symbol for d in reduces} == {BTC, ETH} and all(d.decision_id == first.pk for d in reduces)
    assert set(second.portfolio["pending_reductions_usd"]) == {BTC, ETH}
    assert not second.directives.exists()  # nothing more is asked, and nothing needed recording
    assert Event.objects.filter(type="portfolio.balance").count() == 1
    ev = Event.objects.get(type="portfolio.balance")
    assert ev.trace_id == first.trace_id and ev.payload["status"] == "REBALANCE_REQUIRED"
    assert set(ev.payload["symbols_to_reduce"]) == {BTC, ETH} and ev.payload["symbols_to_increase"] == []
    assert wait_until_handled(ev.event_id, timeout=30)
    assert wait_for(lambda: ExecutionIntent.objects.filter(source="portfolio_balance", status="done").count() == 2,
                    timeout=30)
    # The reductions went through risk as reduce-only orders carrying the decision's trace id.
    orders = Order.objects.filter(trace_id=first.trace_id)
    assert orders.count() == 2 and all(o.reduce_only and o.side == "sell" and o.status == "filled" for o in orders)
    equity = D(first.portfolio["equity_usd"])
    lot_slack = D("0.001") * 70_000 + D("0.01") * 4_000  # amounts round to the lot: one lot each may remain
    assert _sector_exposure("layer1") <= equity * D("0.08") + lot_slack
    assert _sector_exposure("layer1") < before
    # Once filled, the book is within its caps: the next pass reduces nothing.
    third = _pass()
    assert not third.directives.filter(layer="pba").exists()
    state = rpc.call("analytics", "get_portfolio_state", timeout=20, retries=1)
    assert state["caps"]["max_sector_exposure_pct"] == "30"  # the ops worker answers with its own settings
    assert {p["symbol"] for p in state["positions"]} == {BTC, ETH} and "layer1" in state["sector_exposures_usd"]
    assert state["last_decision"]["id"] == third.pk


def test_a_profitable_position_with_an_agreeing_signal_gets_exactly_one_add_within_the_limits(market, settings):
    from analytics.models import HfosDirective, PositionAssessment
    from trading.models import ExecutionIntent, Order, Position

    settings.PBA_ENABLED = False
    pos = _open(BTC, "0.08", "pal-btc")  # ~4,800 USD
    _snapshot_fresh()
    _healthy_graph()
    _make_profitable(pos, "8")
    _current_signal(BTC, "BUY")
    notional = Position.objects.get(pk=pos.pk).notional_usd
    decision = _pass(include_pba=False)
    assessment = PositionAssessment.objects.get(position_id=pos.pk)
    assert assessment.label == "winner" and assessment.pnl_pct > 5, assessment.reasons
    assert decision is not None, "nothing decided"
    assert decision.directives.filter(layer="pal").exists(), [str(d) + d.reason for d in decision.directives.all()]
    add = HfosDirective.objects.get(layer="pal", kind="add", outcome="accepted")
    # 1.5 x the position, capped by the room under the risk policy's 10,000 USD per position.
    assert add.amount_usd == min(notional * D("1.5"), D(10_000) - notional).quantize(D("0.01"), "ROUND_DOWN")
    assert add.decision_id == decision.pk and add.position_id == pos.pk
    ev = Event.objects.get(type="profit.amplification")
    assert ev.trace_id == decision.trace_id and ev.payload["action"] == "add"
    assert wait_until_handled(ev.event_id, timeout=30)
    assert _pass(include_pba=False) is None  # within the window: no second add, nothing to record
    assert Event.objects.filter(type="profit.amplification").count() == 1
    intent = wait_for(lambda: ExecutionIntent.objects.filter(source="profit_amplification", status="done").first(),
                      timeout=30)
    assert intent and intent.trace_id == decision.trace_id
    order = Order.objects.get(trace_id=decision.trace_id)
    assert order.side == "buy" and not order.reduce_only
    grown = Position.objects.get(pk=pos.pk)
    assert grown.amount > pos.amount and grown.notional_usd <= D(10_000) * D("1.0005")  # the mark may lag a tick


def test_a_pal_add_against_a_pba_reduction_is_decided_for_pba_and_recorded(market, settings):
    from analytics.models import HfosDecision, HfosDirective

    settings.PBA_MAX_POSITIONS = 1  # the smaller of the two positions must close
    _open(ETH, "3", "conflict-eth")  # ~9,000 USD
    small = _open(DOGE, "10000", "conflict-doge")  # ~2,000 USD
    _snapshot_fresh()
    _healthy_graph()
    _make_profitable(small, "8")
    _current_signal(DOGE, "BUY")
    from django.db import transaction

    with transaction.atomic():  # the close is sent on commit: the monitor pass runs while it is on its way
        decision = _pass()
        between = _pass("monitor", include_pba=False)
    # 60 s later, before the close has filled, PAL tries again and loses to the reduction on its way.
    again = HfosDirective.objects.get(decision=between, layer="pal")
    assert again.outcome == "overruled" and again.overruled_by.startswith(f"pba: reduce {DOGE}")
    assert "a reduction already on its way" in again.overruled_by
    from trading.models import Position

    assert wait_for(lambda: not Position.objects.filter(symbol__symbol=DOGE, status="open").exists(), timeout=30)
    overruled = HfosDirective.objects.get(decision=decision, layer="pal", outcome="overruled")
    assert overruled.symbol == DOGE and overruled.overruled_by.startswith("pba: reduce " + DOGE)
    assert "pba outranks pal" in overruled.why
    assert HfosDirective.objects.filter(decision=decision, layer="pba", symbol=DOGE, outcome="accepted").exists()
    assert not Event.objects.filter(type="profit.amplification").exists()
    assert Event.objects.filter(type="portfolio.balance", trace_id=decision.trace_id).exists()
    # The record is readable over the API, found by trace id.
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(User.objects.create_user("viewer"))
    body = client.get("/api/orchestration/decisions/", {"trace_id": decision.trace_id}).json()
    assert [d["id"] for d in body["results"]] == [decision.pk]
    assert {(d["layer"], d["outcome"]) for d in body["results"][0]["directives"]} >= {("pba", "accepted"),
                                                                                      ("pal", "overruled")}
    body = client.get("/api/orchestration/decisions/", {"layer": "pal", "outcome": "overruled"}).json()
    assert {d["id"] for d in body["results"]} == {decision.pk, between.pk}
    body = client.get("/api/orchestration/decisions/", {"layer": "pba", "outcome": "overruled"}).json()
    assert body["results"] == []  # a pba directive and an overruled one in one decision is not a match
    assert HfosDecision.objects.exclude(trigger__startswith="position.opened").count() == 2


def test_during_reduce_only_pal_publishes_nothing_that_opens_risk(market, settings):
    from analytics.models import HfosDirective
    from core.enums import Mode
    from risk.services.modes import mode_set

    settings.PBA_ENABLED = False
    pos = _open(BTC, "0.05", "ro-btc")
    _snapshot_fresh()
    _healthy_graph()
    _make_profitable(pos, "8")
    _current_signal(BTC, "BUY")
    mode_set(target=Mode.REDUCE_ONLY, reason="self-healing: execution CRITICAL for 30 s", changed_by="self-healing",
             by_operator=False)
    decision = _pass(include_pba=False)
    pal = HfosDirective.objects.get(decision=decision, layer="pal")
    assert pal.outcome == "overruled" and pal.overruled_by.startswith("self_healing: reduce_only *")
    assert not Event.objects.filter(type="profit.amplification").exists()


def test_a_new_position_sets_off_a_balancer_pass_on_the_ops_worker(market):
    from analytics.models import HfosDecision

    _open(ETH, "0.5", "opened-eth")
    decision = HfosDecision.objects.get(trigger__startswith="position.opened")  # _open waited for it
    assert decision.trigger == f"position.opened {ETH}" and not decision.skipped
    assert decision.portfolio["caps"]["max_sector_exposure_pct"] == "30"


def test_a_rebalance_with_one_bad_directive_is_refused_whole(market):
    from trading.models import ExecutionIntent

    _open(ETH, "1", "bad-eth")
    ev = publish("portfolio.balance", {"equity_usd": "100000", "gross_exposure_usd": "3000",
                                       "directives": ["reduce ETH/USDT:USDT 100", "reduce NOPE/USDT:USDT 50",
                                                      "reduce DOGE/USDT:USDT 10"]})
    assert wait_until_handled(ev.event_id, timeout=30)
    ev2 = publish("portfolio.balance", {"equity_usd": "100000", "gross_exposure_usd": "3000",
                                        "directives": ["reduce ETH/USDT:USDT 99999"]})
    assert wait_until_handled(ev2.event_id, timeout=30)
    assert not ExecutionIntent.objects.filter(source="portfolio_balance").exists()
    alerts = {e.trace_id: e.payload["message"] for e in Event.objects.filter(type="risk.alert")}
    assert "unknown symbol NOPE/USDT:USDT" in alerts[ev.trace_id]
    assert "no open position in DOGE/USDT:USDT" in alerts[ev.trace_id]
    assert "bigger than the ETH/USDT:USDT position" in alerts[ev2.trace_id]


def test_an_at_risk_position_is_classified_with_its_reason_and_its_stops_are_left_alone(market, settings):
    from analytics.models import PositionAssessment
    from trading.models import Position

    settings.PBA_ENABLED = False
    pos = _open(ETH, "1", "risk-eth")
    _snapshot_fresh()
    _healthy_graph()
    _make_profitable(pos, "8")
    _current_signal(ETH, "SELL")  # the signal turned against the long
    before = Position.objects.get(pk=pos.pk)
    _pass(include_pba=False)
    a = PositionAssessment.objects.get(position_id=pos.pk)
    assert a.label == "at_risk" and a.reasons == ["the signal reversed to short"] and a.open
    after = Position.objects.get(pk=pos.pk)
    # Position intelligence does not tighten stops: the monitor's stops stand as they were.
    assert (after.stop_loss_price, after.take_profit_price) == (before.stop_loss_price, before.take_profit_price)
    assert not Event.objects.filter(type="profit.amplification").exists()  # only winners are amplified


def test_in_shadow_the_pass_decides_and_records_but_publishes_nothing(market, settings):
    from analytics.models import HfosDecision, HfosDirective

    settings.PBA_MAX_SECTOR_EXPOSURE_PCT = "5"
    settings.ANALYTICS_OS_SERVICE_SHADOW = True
    _open(BTC, "0.1", "shadow-btc")
    _snapshot_fresh()
    _healthy_graph()
    decision = _pass()
    assert decision.shadow and HfosDirective.objects.filter(decision=decision, layer="pba", outcome="accepted",
                                                            event_id__isnull=True).exists()
    assert not Event.objects.filter(type="portfolio.balance").exists()
    settings.ANALYTICS_OS_SERVICE_SHADOW = False  # out of shadow, the reduction is still owed: it goes now
    live = _pass()
    assert not live.shadow and Event.objects.filter(type="portfolio.balance", trace_id=live.trace_id).exists()
    assert HfosDecision.objects.filter(shadow=True).count() == 1
