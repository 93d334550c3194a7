"""The meta-strategy's profile changes what inference and execution do: real workers (the
inference worker sizes, the execution worker trades, the learning worker learns), PostgreSQL,
Redis and the paper exchange.

Inference itself runs in the test process, with RL_META_STRATEGY_ENABLED on and a one-model
engine whose P(up) is fixed (ai/tests/test_meta_services.py): the workers' inference would
need trained champions, and what is under test is the profile, not the models. Everything
after `signal.generated` runs on the real workers."""
from __future__ import annotations

from decimal import Decimal

import pytest

from ai import inference
from ai.meta.bandit import ContextualBandit
from ai.meta.services import save_bandit
from ai.models import MetaStrategyDecision, MetaStrategyState
from ai.tests.test_meta_services import ETH, FakeEngine, eth_context, store_bandit_preferring
from qtweb import rpc
from qtweb.events.models import Event
from tests.support.execution import build_market
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

D = Decimal


@pytest.fixture
def market(celery_workers, settings):
    settings.MARKET_EXCHANGE = "paper"
    settings.RL_META_STRATEGY_ENABLED = True  # this process runs inference
    market = build_market()
    rpc.call("exec-risk", "reload_gateway", timeout=10, retries=1)  # the worker forgets the last test's DB ids
    yield market
    from trading.exchanges.account import use_gateway

    use_gateway(None)
    inference._engine = None


def _types(trace_id: str) -> set[str]:
    return set(Event.objects.filter(trace_id=trace_id).values_list("type", flat=True))


def test_a_stand_aside_profile_publishes_no_signal_where_the_default_would_trade(market, settings):
    from trading.models import ExecutionIntent

    store_bandit_preferring("stand_aside", eth_context())
    inference._engine = FakeEngine(0.8)
    settings.RL_META_STRATEGY_ENABLED = False
    assert inference.run_inference(symbols=[ETH], publish=False).signals[ETH].vote.action == "BUY"  # the default
    settings.RL_META_STRATEGY_ENABLED = True
    inference.run_inference(symbols=[ETH])
    d = MetaStrategyDecision.objects.get()
    assert d.profile == "stand_aside" and not d.fallback
    assert _types(d.trace_id) == {"model.prediction"}  # no signal, so nothing sized and nothing traded
    assert not Event.objects.filter(type__in=["signal.generated", "rl.decision"]).exists()
    assert not ExecutionIntent.objects.exists()


def test_a_patient_profile_makes_the_execution_worker_trade_with_limit_orders(market):
    from trading.models import ExecutionIntent, Order

    store_bandit_preferring("patient", eth_context())
    inference._engine = FakeEngine(0.8)
    inference.run_inference(symbols=[ETH])
    d = MetaStrategyDecision.objects.get()
    assert d.profile == "patient" and d.execution_strategy == "limit"
    decision = wait_for(lambda: Event.objects.filter(type="rl.decision", trace_id=d.trace_id).first(), timeout=30)
    assert decision is not None, "the inference worker did not size the signal"
    p = decision.payload
    assert (p["profile"], p["profile_fallback"], p["execution_strategy"], p["horizon_bars"]) == (
        "patient", False, "limit", 24)
    intent = wait_for(lambda: ExecutionIntent.objects.filter(trace_id=d.trace_id).first(), timeout=30)
    assert intent is not None, f"no intent from {p}"
    assert intent.requested_strategy == "limit" and intent.params["horizon_bars"] == 24
    order = wait_for(lambda: Order.objects.filter(trace_id=d.trace_id).first(), timeout=30)
    assert order is not None and order.strategy == "limit" and order.type == "limit"


def test_the_learning_worker_rewards_the_profile_that_opened_a_position_closed_by_a_reversal(market):
    from trading.models import Order, Position

    save_bandit(ContextualBandit())  # untrained: the default profile, flagged
    inference._engine = FakeEngine(0.8)
    inference.run_inference(symbols=[ETH])
    opener = MetaStrategyDecision.objects.get()
    assert opener.profile == "default" and opener.fallback and "untrained" in opener.reason
    pos = wait_for(lambda: Position.objects.filter(trace_id=opener.trace_id, status="open").first(), timeout=30)
    assert pos is not None, "the default profile's BUY opened no position"
    assert Order.objects.get(trace_id=opener.trace_id).strategy == "market"  # SMART, as without the agent
    assert wait_for(lambda: MetaStrategyDecision.objects.filter(pk=opener.pk, position_id=str(pos.pk)).exists(),
                    timeout=30), "position.opened was not linked to its decision"

    inference._engine = FakeEngine(0.2)  # the models turn: a SELL closes the long under a new trace
    inference.run_inference(symbols=[ETH])
    reversal = MetaStrategyDecision.objects.exclude(pk=opener.pk).get()
    assert reversal.trace_id != opener.trace_id
    assert wait_for(lambda: MetaStrategyDecision.objects.filter(pk=opener.pk, rewarded_at__isnull=False).exists(),
                    timeout=45), "the learning worker did not reward the opening decision"
    pos.refresh_from_db()
    assert pos.status == "closed" and pos.exit_reason == "signal_reversal"
    opener.refresh_from_db()
    expected = pos.realized_pnl_usd / (pos.max_amount * pos.entry_price)
    assert opener.reward == pytest.approx(float(expected), rel=1e-9)
    assert opener.pnl_usd == pos.realized_pnl_usd
    reversal.refresh_from_db()
    assert reversal.reward is None  # the pass that closed it did not open it
    state = MetaStrategyState.objects.get()
    assert state.rewards_applied == 1
    arms = {(a["regime"], a["group"], a["profile"]): a for a in ContextualBandit.from_dict(state.bandit).table()}
    assert arms[(opener.regime, "layer1", "default")]["n"] == 1
