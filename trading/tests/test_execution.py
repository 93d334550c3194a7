"""Execution in-process on the real paper exchange and PostgreSQL (no workers): intents, the
risk path, strategies, orders, fills, positions, exits, emergency stop, reconciliation."""
from __future__ import annotations

from decimal import Decimal

import pytest

D = Decimal


def manual(key: str, symbol="BTC/USDT:USDT", side="buy", amount="0.05", **kw):
    from trading.execution.services import intent_create, intent_process

    intent, _ = intent_create(key=key, source="manual", symbol=symbol, side=side, amount=D(amount),
                              strategy=kw.pop("strategy", "market"), **kw)
    return intent_process(intent.pk)


def test_a_manual_market_order_fills_and_opens_a_position(paper_market):
    from qtweb.events.models import Event
    from trading.models import Fill, Order, Position

    intent = manual("m1", leverage=3)
    assert intent.status == "done", intent.reason
    order = Order.objects.get(intent=intent)
    assert order.status == "filled" and order.filled == D("0.05") and order.client_order_id.startswith("qt")
    assert Fill.objects.filter(order=order).count() == 1
    pos = Position.objects.get(status="open")
    assert pos.side == "long" and pos.amount == D("0.05") and pos.leverage == 3
    assert pos.stop_loss_price < pos.entry_price < pos.take_profit_price
    assert pos.realized_pnl_usd == -pos.fees_usd and pos.fees_usd > 0
    types = list(Event.objects.order_by("timestamp").values_list("type", flat=True))
    assert "execution.result" in types and "position.opened" in types
    order_level, intent_level = [e.payload for e in Event.objects.filter(type="execution.result").order_by("timestamp")]
    for result in (order_level, intent_level):
        assert result["status"] == "filled" and result["leverage"] == 3 and result["exchange_order_id"]
        assert D(result["filled_size_usd"]) > 0 and result["slippage_pct"] is not None
    assert not order_level["intent_complete"] and intent_level["intent_complete"]
    assert intent_level["client_order_id"] == order.client_order_id and intent_level["intent_key"] == "m1"


def events(kind: str) -> list[dict]:
    from qtweb.events.models import Event

    return list(Event.objects.filter(type=kind).order_by("timestamp").values_list("payload", flat=True))


def paper_orders() -> int:
    from trading.models import PaperOrder

    return PaperOrder.objects.count()


def test_the_same_intent_twice_places_one_order(paper_market):
    from trading.execution.services import intent_process
    from trading.models import Order

    first = manual("dup-1")
    again = manual("dup-1")  # a re-delivery finds its intent
    intent_process(first.pk)
    assert first.pk == again.pk and Order.objects.count() == 1 and paper_orders() == 1


@pytest.mark.parametrize(("kw", "problem"), [
    ({"amount": "-1"}, "size must be positive"),
    ({"symbol": "NOPE/USDT:USDT"}, "unknown symbol 'NOPE/USDT:USDT'"),
    ({"strategy": "yolo"}, "unknown strategy 'yolo'"),
])
def test_malformed_manual_orders_are_refused_before_anything_is_sent(paper_market, kw, problem):
    from trading.execution.services import IntentError
    from trading.models import ExecutionIntent

    with pytest.raises(IntentError, match=problem):
        manual("bad-1", **kw)
    assert not ExecutionIntent.objects.exists() and paper_orders() == 0


def test_leverage_above_policy_is_rejected_with_the_reason_and_an_alert(paper_market):
    from risk.models import RiskDecision

    intent = manual("lev-1", leverage=50)
    assert intent.status == "rejected" and "leverage 50" in intent.reason
    decision = RiskDecision.objects.get(intent_key="manual:lev-1" if False else "lev-1")
    assert not decision.approved and decision.policy_version == 1 and decision.reasons[0]["rule"] == "leverage"
    alert = events("risk.alert")[-1]
    assert alert["rule"] == "TRADE_BLOCKED" and alert["rejected"] and alert["reasons"][0]["rule"] == "leverage"
    assert paper_orders() == 0


def test_every_decision_records_the_policy_version_in_force(paper_market):
    from risk.models import RiskDecision
    from risk.services.policy import policy_update

    manual("v1")
    policy_update(changes={"max_position_usd": "50000"}, updated_by="alice", reason="bigger book")
    manual("v2")
    versions = dict(RiskDecision.objects.values_list("intent_key", "policy_version"))
    assert versions == {"v1": 1, "v2": 2}
    assert events("policy.updated")[-1] == {"policy_version": 2, "changed_fields": ["max_position_usd"],
                                            "updated_by": "alice"}


def test_shadow_mode_records_the_decision_and_sends_nothing(paper_market):
    from risk.models import RiskDecision
    from risk.services.modes import mode_set

    mode_set(target="SHADOW", reason="dry run", changed_by="alice", by_operator=True)
    intent = manual("sh-1")
    assert intent.status == "shadow" and paper_orders() == 0
    assert RiskDecision.objects.get(intent_key="sh-1").approved


def test_halted_and_reduce_only_block_entries(paper_market):
    from risk.services.modes import mode_set

    mode_set(target="REDUCE_ONLY", reason="cooling off", changed_by="alice", by_operator=True)
    assert manual("ro-1").status == "rejected"
    mode_set(target="HALTED", reason="stop", changed_by="alice", by_operator=True)
    halted = manual("h-1")
    assert halted.status == "rejected" and "HALTED" in halted.reason and paper_orders() == 0


def test_a_stale_reference_price_rejects(paper_market):
    import time

    from trading.marketdata.reference import mark_feed_ok

    mark_feed_ok("paper", at=time.time() - 600)
    intent = manual("stale-1")
    assert intent.status == "rejected" and "stale" in intent.reason and paper_orders() == 0


def test_twap_places_every_slice_and_the_sum_is_the_amount(paper_market):
    from trading.models import Order

    intent = manual("twap-1", amount="0.09", strategy="twap", params={"slices": 3, "duration_seconds": 0})
    assert intent.status == "done" and intent.strategy == "twap"
    orders = list(Order.objects.filter(intent=intent).order_by("slice_index"))
    assert [o.slice_index for o in orders] == [0, 1, 2] and sum(o.filled for o in orders) == D("0.09")
    assert len({o.client_order_id for o in orders}) == 3 and intent.filled_amount == D("0.09")


def test_twap_slices_wait_for_their_time(paper_market):
    import time

    from trading.execution.services import intent_advance
    from trading.models import Order

    intent = manual("twap-2", amount="0.06", strategy="twap", params={"slices": 2, "duration_seconds": 0.6})
    assert intent.status == "working" and Order.objects.filter(intent=intent).count() == 1
    assert intent.next_action_at is not None
    time.sleep(0.35)
    intent = intent_advance(intent.pk)
    assert intent.status == "done" and Order.objects.filter(intent=intent).count() == 2


def test_vwap_follows_the_volume_profile_and_fills_the_amount(paper_market):
    from trading.models import Order

    intent = manual("vwap-1", amount="0.15", strategy="vwap", params={"slices": 4, "duration_seconds": 0})
    assert intent.status == "done" and intent.strategy == "vwap"
    assert sum(o.filled for o in Order.objects.filter(intent=intent)) == D("0.15")


def test_smart_sends_a_small_order_at_market(paper_market):
    intent = manual("smart-1", amount="0.002", strategy="smart")
    assert intent.status == "done" and intent.strategy == "market"


def test_a_limit_order_rests_then_is_repriced_after_its_timeout(paper_market):
    import time

    from tests.support.execution import last_close
    from trading.execution.services import intent_advance
    from trading.models import Order

    far = (last_close("BTC/USDT:USDT") * D("0.985")).quantize(D("0.1"))
    intent = manual("lim-1", strategy="limit", order_type="limit", limit_price=far,
                    params={"limit_timeout_seconds": 0.2})
    assert intent.status == "working"
    first = Order.objects.get(intent=intent)
    assert first.status == "open" and first.price == far
    time.sleep(0.25)
    intent = intent_advance(intent.pk)
    first.refresh_from_db()
    assert first.status == "cancelled" and len(intent.plan) == 2
    second = Order.objects.get(intent=intent, slice_index=1)
    assert second.client_order_id != first.client_order_id and second.price > far


def test_a_limit_order_with_cancel_on_timeout_stops(paper_market):
    import time

    from tests.support.execution import last_close
    from trading.execution.services import intent_advance

    far = (last_close("BTC/USDT:USDT") * D("0.985")).quantize(D("0.1"))
    intent = manual("lim-2", strategy="limit", order_type="limit", limit_price=far,
                    params={"limit_timeout_seconds": 0.1, "on_timeout": "cancel"})
    time.sleep(0.15)
    intent = intent_advance(intent.pk)
    assert intent.status == "stopped" and "timed out" in intent.reason


def test_the_slippage_cap_stops_the_remaining_slices(paper_market):
    from risk.services.policy import policy_update
    from trading.models import Order

    policy_update(changes={"max_slippage_pct": "0.0001"}, updated_by="test")
    intent = manual("slip-1", amount="0.09", strategy="twap", params={"slices": 3, "duration_seconds": 0})
    assert intent.status == "stopped" and "slippage" in intent.reason
    assert Order.objects.filter(intent=intent).count() < 3
    assert any(a["rule"] == "max_slippage" for a in events("risk.alert"))


def test_a_stop_loss_hit_closes_the_position_with_the_design_fields(paper_market):
    from trading.models import Position
    from trading.positions.monitor import monitor_once

    manual("sl-1", leverage=2)
    pos = Position.objects.get(status="open")
    Position.objects.filter(pk=pos.pk).update(stop_loss_price=pos.entry_price * 2)  # far above: hit now
    result = monitor_once()
    assert result["exits"] == 1
    pos.refresh_from_db()
    assert pos.status == "closed" and pos.exit_reason == "stop_loss" and pos.amount == 0
    closed = events("position.closed")[-1]
    assert closed["exit_reason"] == "stop_loss" and D(closed["pnl_usd"]) == pos.realized_pnl_usd
    assert closed["duration_seconds"] >= 0 and closed["entry_model"] == "manual" and closed["leverage"] == 2
    assert "pnl_pct" in closed and D(closed["fees_usd"]) > 0


def test_take_profit_and_position_status(paper_market):
    from trading.models import Position
    from trading.positions.monitor import monitor_once
    from trading.positions.queries import position_status

    manual("tp-1", side="sell", amount="0.1")  # a short on the BTC perpetual
    pos = Position.objects.get(status="open")
    assert pos.side == "short"
    status = position_status("BTC/USDT:USDT")
    assert status["open"] and status["position"]["side"] == "short"
    Position.objects.filter(pk=pos.pk).update(take_profit_price=pos.entry_price * 2)  # short: TP above = hit
    monitor_once()
    pos.refresh_from_db()
    assert pos.status == "closed" and pos.exit_reason == "take_profit"
    assert position_status("BTC/USDT:USDT")["last_closed"]["exit_reason"] == "take_profit"
    with pytest.raises(ValueError, match="unified symbol"):
        position_status("btc")


def test_signal_plus_decision_trades_once_and_a_reversal_closes(paper_market):
    from qtweb.events.bus import publish
    from qtweb.events.schemas import build_envelope
    from tests.support.execution import rl_decision_for
    from trading.execution.services import intent_from_rl_decision, intent_process
    from trading.models import ExecutionIntent, Position

    sig = {"symbol": "ETH/USDT:USDT", "timeframe": "5m", "action": "BUY", "confidence": 0.8, "score": 0.6,
           "ensemble_agreement": 1.0, "models_voted": 4, "model_versions": {"xgboost": "3"}}
    buy = publish("signal.generated", sig, trace_id="trace-sig-buy-1")
    decision = build_envelope("rl.decision", rl_decision_for(buy, final_size_usd="1500"), trace_id="trace-sig-buy-1",
                              source="ai-service")
    first = intent_from_rl_decision(decision)
    assert intent_from_rl_decision(decision).pk == first.pk  # delivered twice: one intent
    intent = intent_process(first.pk)
    assert intent.status == "done", intent.reason
    pos = Position.objects.get(status="open")
    assert pos.entry_model == "ensemble(xgboost:3)" and pos.entry_confidence == D("0.8") and pos.side == "long"
    assert pos.trace_id == "trace-sig-buy-1"
    sell_signal = publish("signal.generated", {**sig, "action": "SELL", "score": -0.6}, trace_id="trace-sig-sell-1")
    sell = build_envelope("rl.decision", rl_decision_for(sell_signal, final_size_usd="1500"),
                          trace_id="trace-sig-sell-1", source="ai-service")
    close = intent_process(intent_from_rl_decision(sell).pk)
    pos.refresh_from_db()
    assert close.reduce_only and pos.status == "closed" and pos.exit_reason == "signal_reversal"
    assert ExecutionIntent.objects.count() == 2


def test_a_low_confidence_signal_is_rejected(paper_market):
    from qtweb.events.bus import publish
    from qtweb.events.schemas import build_envelope
    from tests.support.execution import rl_decision_for
    from trading.execution.services import intent_from_rl_decision, intent_process

    signal = publish("signal.generated", {"symbol": "ETH/USDT:USDT", "timeframe": "5m", "action": "BUY",
                                          "confidence": 0.55, "score": 0.1, "ensemble_agreement": 0.5,
                                          "models_voted": 4}, trace_id="trace-lowc-1")
    d = build_envelope("rl.decision", rl_decision_for(signal, final_size_usd="500"), trace_id="trace-lowc-1",
                       source="ai-service")
    intent = intent_process(intent_from_rl_decision(d).pk)
    assert intent.status == "rejected" and "confidence" in intent.reason


def test_a_rejected_exit_lets_the_monitor_try_again(paper_market):
    import time

    from trading.marketdata.reference import mark_feed_ok
    from trading.models import ExecutionIntent, Position
    from trading.positions.monitor import monitor_once

    manual("ex-1")
    pos = Position.objects.get(status="open")
    Position.objects.filter(pk=pos.pk).update(stop_loss_price=pos.entry_price * 2)
    mark_feed_ok("paper", at=time.time() - 600)  # stale prices: the exit is refused by the collar
    monitor_once()
    pos.refresh_from_db()
    assert pos.status == "open" and not pos.exit_pending
    assert ExecutionIntent.objects.get(source="position_exit").status == "rejected"
    mark_feed_ok("paper")
    monitor_once()  # the next run, same bar: a new attempt, not the refused intent again
    pos.refresh_from_db()
    assert pos.status == "closed" and pos.exit_reason == "stop_loss"
    keys = sorted(ExecutionIntent.objects.filter(source="position_exit").values_list("intent_key", flat=True))
    assert [k.rsplit(":", 1)[1] for k in keys] == ["0", "1"]


def test_a_refused_exit_backs_off_after_the_first_retry(paper_market):
    import time
    from datetime import timedelta

    from django.utils import timezone

    from trading.execution.services.sources import exit_retry_wait_seconds
    from trading.marketdata.reference import mark_feed_ok
    from trading.models import ExecutionIntent, Position
    from trading.positions.monitor import monitor_once

    assert [exit_retry_wait_seconds(a) for a in range(8)] == [0, 0, 10, 20, 40, 80, 160, 300]
    manual("bo-1")
    pos = Position.objects.get(status="open")
    Position.objects.filter(pk=pos.pk).update(stop_loss_price=pos.entry_price * 2)
    mark_feed_ok("paper", at=time.time() - 600)  # stale prices: every exit is refused
    exits = ExecutionIntent.objects.filter(source="position_exit")
    monitor_once()
    monitor_once()
    assert exits.count() == 2  # the first retry is immediate
    monitor_once()
    assert exits.count() == 2  # the third waits 10 s after the second
    exits.update(updated_at=timezone.now() - timedelta(seconds=11))
    mark_feed_ok("paper")
    monitor_once()
    pos.refresh_from_db()
    assert exits.count() == 3 and pos.status == "closed"


def test_a_spot_position_exits_with_a_plain_sell(paper_market):
    """Spot has no reduceOnly: the exit of a spot holding is a plain sell of what is held (it
    was sent with reduceOnly and refused on every monitor run, which also spent the order-rate
    budget the other symbols needed)."""
    from trading.models import ExecutionIntent, Order, Position
    from trading.positions.monitor import monitor_once

    assert manual("spot-1", symbol="BTC/USDT", amount="0.01").status == "done"
    pos = Position.objects.get(status="open", symbol__symbol="BTC/USDT")
    Position.objects.filter(pk=pos.pk).update(stop_loss_price=pos.entry_price * 2)
    monitor_once()
    pos.refresh_from_db()
    exit_intent = ExecutionIntent.objects.get(source="position_exit")
    assert exit_intent.reduce_only and exit_intent.status == "done", exit_intent.reason
    assert pos.status == "closed" and pos.exit_reason == "stop_loss"
    assert not Order.objects.filter(status="rejected").exists()


def test_the_monitor_copies_the_exchanges_liquidation_price(paper_market):
    from trading.models import Position
    from trading.positions.monitor import monitor_once

    manual("liq-1", leverage=10)
    monitor_once()
    pos = Position.objects.get(status="open")
    assert pos.liquidation_price is not None and D("0") < pos.liquidation_price < pos.entry_price
    assert pos.mark_price is not None and pos.unrealized_pnl_usd == (pos.mark_price - pos.entry_price) * pos.amount
    tick = pos.symbol.tick_size
    assert pos.stop_loss_price % tick == 0 and pos.take_profit_price % tick == 0  # prices on the tick grid


def test_a_manual_limit_order_without_a_strategy_rests_as_a_limit(paper_market):
    from qtweb.events.schemas import EventValidationError, build_envelope
    from tests.support.execution import last_close
    from trading.execution.services import intent_from_request, intent_process
    from trading.models import Order

    price = str((last_close("BTC/USDT:USDT") * D("0.99")).quantize(D("0.1")))
    env = build_envelope("execution.request", {"client_order_id": "lim-man-1", "symbol": "BTC/USDT:USDT",
                                               "side": "buy", "order_type": "limit", "amount": "0.01",
                                               "price": price}, trace_id="trace-lim-man", source="web")
    intent = intent_process(intent_from_request(env).pk)
    order = Order.objects.get(intent=intent)
    assert intent.strategy == "limit" and order.type == "limit" and order.price == D(price) and order.status == "open"
    with pytest.raises(EventValidationError, match="strategy 'limit'"):
        build_envelope("execution.request", {"client_order_id": "lim-man-2", "symbol": "BTC/USDT:USDT",
                                             "side": "buy", "order_type": "limit", "amount": "0.01", "price": price,
                                             "strategy": "twap"}, trace_id="trace-lim-man2", source="web")


def test_a_bar_that_moves_the_trailing_stop_does_not_also_hit_it(paper_market):
    from trading.marketdata import cache
    from trading.models import Position
    from trading.positions.monitor import monitor_once

    manual("trail-1")
    pos = Position.objects.get(status="open")
    Position.objects.filter(pk=pos.pk).update(take_profit_price=None)
    entry = float(pos.entry_price)
    t0 = int(cache.latest_bar("paper", "5m", "BTC/USDT:USDT")[0])
    monitor_once()  # remembers the entry's bar
    old_stop = Position.objects.get(pk=pos.pk).stop_loss_price

    def bar(k, low, high, close):
        cache.store_latest("paper", "5m", {"BTC/USDT:USDT": [t0 + k * 300_000, low, high, low, close, 10.0]})

    bar(1, low=entry * 1.01, high=entry * 1.05, close=entry * 1.05)  # +1 % at the open, +5 % at the close
    monitor_once()
    pos.refresh_from_db()
    assert pos.status == "open" and pos.stop_loss_price > D(str(entry * 1.01)) > old_stop  # trailed, not hit
    assert pos.trailing["trailing_active"] and pos.trailing["break_even_done"]
    monitor_once()  # the same bar again: its low is not searched against the stop it moved
    pos.refresh_from_db()
    assert pos.status == "open"
    bar(2, low=entry * 1.0, high=entry * 1.04, close=entry * 1.0)  # the next bar falls through the stop
    monitor_once()
    pos.refresh_from_db()
    assert pos.status == "closed" and pos.exit_reason == "trailing_stop"


def test_equity_counts_unrealized_pnl_once():
    """Binance futures report a margin balance (wallet + unrealized PnL); the paper exchange a wallet."""
    from types import SimpleNamespace

    from trading.selectors import equity_usd

    perp = SimpleNamespace(symbol=SimpleNamespace(market_type="swap"), amount=D("1"), mark_price=D("110"),
                           entry_price=D("100"), unrealized_pnl_usd=D("10"))
    spot = SimpleNamespace(symbol=SimpleNamespace(market_type="spot"), amount=D("2"), mark_price=D("50"),
                           entry_price=D("40"), unrealized_pnl_usd=D("20"))
    wallet = {"total": {"USDT": 1000.0}}
    assert equity_usd(wallet, [perp, spot]) == D("1110.00")  # 1000 + 10 uPnL + 2 x 50 spot
    assert equity_usd(wallet, [perp, spot], includes_unrealized_pnl=True) == D("1100.00")
    from trading.exchanges.ccxt_backend import CcxtGateway

    assert CcxtGateway("binanceusdm").balance_includes_unrealized_pnl
    assert not CcxtGateway("binance").balance_includes_unrealized_pnl


def test_fees_are_valued_in_usd_by_their_currency(paper_market):
    from types import SimpleNamespace

    from trading.execution.orders import _fee_usd

    sym = SimpleNamespace(base="BTC", quote="USDT", exchange="paper")
    assert _fee_usd({"fee": {"cost": 1.5, "currency": "USDT"}}, sym, D("60000")) == D("1.5")
    assert _fee_usd({"fee": {"cost": 0.00001, "currency": "BTC"}}, sym, D("60000")) == D("0.6")
    eth = _fee_usd({"fee": {"cost": 0.001, "currency": "ETH"}}, sym, D("60000"))  # ETH/USDT:USDT is known
    assert D("0") < eth < D("10")  # valued at ETH's price, not BTC's (which would be 60 USD)
    assert _fee_usd({"fees": [{"cost": 0.5, "currency": "BNB"}]}, sym, D("60000")) == 0  # no BNB price: 0, logged


def test_the_collar_checks_the_price_the_signal_saw(paper_market):
    from qtweb.events.bus import publish
    from qtweb.events.schemas import build_envelope
    from tests.support.execution import last_close, rl_decision_for
    from trading.execution.services import intent_from_rl_decision, intent_process

    seen = (last_close("ETH/USDT:USDT") * D("1.06")).quantize(D("0.01"))  # 6 % away from the market now
    signal = publish("signal.generated", {"symbol": "ETH/USDT:USDT", "timeframe": "5m", "action": "BUY",
                                          "confidence": 0.8, "score": 0.6, "ensemble_agreement": 1.0,
                                          "models_voted": 4, "price": str(seen)}, trace_id="trace-collar-1")
    d = build_envelope("rl.decision", rl_decision_for(signal, final_size_usd="500"), trace_id="trace-collar-1",
                       source="ai-service")
    intent = intent_process(intent_from_rl_decision(d).pk)
    assert intent.status == "rejected" and "collar" in intent.reason


def test_a_symbol_the_feed_keeps_failing_to_fetch_has_a_stale_price(paper_market):
    import time

    from trading.marketdata.reference import mark_feed_ok, reference_price

    mark_feed_ok("paper", at=time.time() - 600, failed_symbols=["ETH/USDT:USDT"])  # failing for 10 minutes
    mark_feed_ok("paper", failed_symbols=["ETH/USDT:USDT"])  # the feed itself answered just now
    assert reference_price("paper", "ETH/USDT:USDT")[1] >= 599
    assert reference_price("paper", "BTC/USDT:USDT")[1] < 5
    assert manual("stale-eth", symbol="ETH/USDT:USDT", amount="0.5").status == "rejected"
    mark_feed_ok("paper", ok_symbols=["ETH/USDT:USDT"])  # it recovered
    assert reference_price("paper", "ETH/USDT:USDT")[1] < 5


def test_an_rl_decision_of_version_1_is_parsed_but_refused_with_its_reason(paper_market):
    """Version 1 named no signal (execution used to find it in the outbox). It still parses (stored
    events, an inference worker not yet upgraded), and execution refuses it instead of guessing."""
    from qtweb.events.schemas import EventEnvelope, RlDecisionV1, parse_envelope
    from trading.execution.services import OutdatedEvent, intent_from_rl_decision
    from trading.models import ExecutionIntent
    from trading.subscribers import on_rl_decision

    raw = {"event_id": "6f1c3c1e-8a53-4a0e-9a3b-1d2c3b4a5f60", "type": "rl.decision", "version": 1,
           "trace_id": "trace-rl-v1-0001", "source": "ai-service", "timestamp": "2026-12-07T00:00:00+00:00",
           "payload": {"symbol": "ETH/USDT:USDT", "action": "BUY", "agent_action": 0.5, "kelly_fraction": 0.2,
                       "final_size_usd": "1000", "agent_trained": True, "reason": "old"}}
    env = parse_envelope(raw)
    assert isinstance(env, EventEnvelope) and isinstance(env.data(), RlDecisionV1)
    with pytest.raises(OutdatedEvent, match="version 1 carries no signal reference"):
        intent_from_rl_decision(env)
    on_rl_decision(env)  # the consumer logs it and moves on
    assert ExecutionIntent.objects.count() == 0
    with pytest.raises(ValueError, match="unknown version 7 of rl.decision; known: \\[1, 2\\]"):
        parse_envelope({**raw, "version": 7})


def test_stops_are_measured_in_the_atr_of_the_signals_horizon(paper_market, settings):
    """Stop and target distances are multiples of the 1h ATR (the models forecast an hour), not
    of one 5m bar, whose range sits inside the noise and near the round trip's costs."""
    from risk.services.policy import policy_get
    from trading.models import Position
    from trading.positions.services import atr

    assert settings.POSITION_ATR_TIMEFRAME == "1h"
    assert manual("atr-1").status == "done"
    pos = Position.objects.get(status="open")
    hourly, five = atr(pos.symbol_id), atr(pos.symbol_id, "5m")
    assert hourly == atr(pos.symbol_id, "1h") and hourly > 2 * five > 0
    distance = pos.entry_price - pos.stop_loss_price
    k = policy_get().stop_loss_atr_multiple
    assert k * hourly <= distance < k * hourly + pos.symbol.tick_size
