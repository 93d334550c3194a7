"""The meta-strategy's services in process on PostgreSQL and the paper exchange (no workers):
inference applies the chosen profile, sizing carries it, execution trades with its strategy,
a closed position rewards it once; the API and admin read it."""
from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.utils import timezone

from ai import inference
from ai.meta.bandit import Context, ContextualBandit, regime_of
from ai.meta.profiles import DEFAULT_PROFILE, profile_named
from ai.models import MetaStrategyDecision, MetaStrategyState, ModelVersion
from ai.registry import ServingModel

pytestmark = pytest.mark.django_db

ETH = "ETH/USDT:USDT"
D = Decimal


class ConstantForecaster:
    """P(up) = p for every row: the vote's confidence is known in advance."""

    input_kind = "tab"

    def __init__(self, p: float):
        self.p = p

    def predict_proba_up(self, x):
        return np.full(len(x), self.p)


class FakeEngine(inference.InferenceEngine):
    """One serving 'model' with a fixed answer, so the tests are about the profile, not the models."""

    def __init__(self, p: float):
        super().__init__()
        self.serving = [ServingModel(ModelVersion(model_type="xgboost", version=1, metrics={}), ConstantForecaster(p))]

    def refresh(self) -> None:
        self.quarantined = {}

    def weights(self) -> dict[str, float]:
        return {"xgboost": 1.0}


@pytest.fixture
def market(settings, clean_cache):
    from tests.support.execution import build_market
    from trading.exchanges.account import use_gateway

    settings.MARKET_EXCHANGE = "paper"
    settings.EXECUTION_EXCHANGE = ""
    market = build_market()
    yield market
    use_gateway(None)
    inference._engine = None


def eth_context() -> Context:
    from ai.features.compute import INFERENCE_BARS
    from ai.features.dataset import bars_from_db

    return Context(regime_of(bars_from_db("paper", "5m", [ETH], INFERENCE_BARS)[ETH][:, 4]), "layer1")


def store_bandit_preferring(profile: str, ctx: Context, n: int = 30) -> ContextualBandit:
    """An agent that learned, in `ctx`, that `profile` earns 2 % a trade and the default loses 1 %."""
    from ai.meta.services import save_bandit

    rng = np.random.default_rng(0)
    b = ContextualBandit()
    for _ in range(n):
        b.update(ctx, "default", float(rng.normal(-0.01, 0.002)))
        if profile_named(profile).trade:
            b.update(ctx, profile, float(rng.normal(0.02, 0.002)))
    save_bandit(b)
    return b


def signals() -> list[dict]:
    from qtweb.events.models import Event

    return list(Event.objects.filter(type="signal.generated").values_list("payload", flat=True))


# --- inference --------------------------------------------------------------------------------


def test_disabled_is_todays_behaviour(market, settings):
    settings.RL_META_STRATEGY_ENABLED = False
    store_bandit_preferring("stand_aside", eth_context())
    inference._engine = FakeEngine(0.8)
    result = inference.run_inference(symbols=[ETH])
    sig = result.signals[ETH]
    assert sig.vote.action == "BUY" and sig.min_confidence == DEFAULT_PROFILE.ensemble_threshold
    assert [s["action"] for s in signals()] == ["BUY"]
    assert signals()[0]["min_confidence_threshold"] == DEFAULT_PROFILE.ensemble_threshold
    assert not MetaStrategyDecision.objects.exists()


def test_standing_aside_publishes_no_signal_and_records_why(market, settings):
    from qtweb.events.models import Event

    settings.RL_META_STRATEGY_ENABLED = True
    ctx = eth_context()
    store_bandit_preferring("stand_aside", ctx)
    inference._engine = FakeEngine(0.8)  # the default profile would BUY
    result = inference.run_inference(symbols=[ETH])
    sig = result.signals[ETH]
    assert sig.vote is None and sig.stood_aside_from.action == "BUY" and "stand_aside" in sig.reason
    assert signals() == []
    assert not Event.objects.filter(type="system.alert").exists()  # standing aside is not "no model answered"
    d = MetaStrategyDecision.objects.get()
    assert (d.symbol, d.regime, d.group, d.profile, d.fallback, d.trade) == (ETH, ctx.regime, "layer1", "stand_aside",
                                                                            False, False)
    prediction = Event.objects.get(type="model.prediction")
    assert d.trace_id == prediction.trace_id and "learned" in d.reason


def test_a_selective_profile_raises_the_threshold(market, settings):
    settings.RL_META_STRATEGY_ENABLED = True
    store_bandit_preferring("selective", eth_context())
    inference._engine = FakeEngine(0.65)  # above the default 0.6, below selective's 0.7
    result = inference.run_inference(symbols=[ETH])
    assert result.signals[ETH].min_confidence == profile_named("selective").ensemble_threshold
    assert [(s["action"], s["min_confidence_threshold"]) for s in signals()] == [("HOLD", 0.7)]
    assert MetaStrategyDecision.objects.get().profile == "selective"  # it changed a trade: recorded


def test_untrained_falls_back_to_the_default_flagged(market, settings):
    settings.RL_META_STRATEGY_ENABLED = True
    inference._engine = FakeEngine(0.8)
    inference.run_inference(symbols=[ETH])
    assert [s["action"] for s in signals()] == ["BUY"]
    d = MetaStrategyDecision.objects.get()
    assert d.profile == "default" and d.fallback and "untrained" in d.reason


def test_an_unreadable_agent_state_falls_back_and_signals_go_on(market, settings):
    settings.RL_META_STRATEGY_ENABLED = True
    MetaStrategyState.objects.create(pk=1, bandit={"version": 99}, updated_at=timezone.now())
    inference._engine = FakeEngine(0.8)
    inference.run_inference(symbols=[ETH])
    assert [s["action"] for s in signals()] == ["BUY"]
    d = MetaStrategyDecision.objects.get()
    assert d.profile == "default" and d.fallback and "unreadable" in d.reason


def test_a_hold_under_every_threshold_records_nothing(market, settings):
    settings.RL_META_STRATEGY_ENABLED = True
    inference._engine = FakeEngine(0.52)
    inference.run_inference(symbols=[ETH])
    assert [s["action"] for s in signals()] == ["HOLD"]
    assert not MetaStrategyDecision.objects.exists()


# --- sizing and execution ---------------------------------------------------------------------


def _published_signal(trace_id: str):
    from qtweb.events.models import Event
    from qtweb.events.schemas import parse_envelope

    return parse_envelope(Event.objects.get(type="signal.generated", trace_id=trace_id).as_envelope())


def test_the_profile_travels_on_rl_decision_and_sets_the_execution_strategy(market, settings):
    from ai.sizing.services import size_signal
    from trading.execution.services import intent_from_rl_decision, intent_process
    from trading.models import Order

    settings.RL_META_STRATEGY_ENABLED = True
    store_bandit_preferring("patient", eth_context())
    inference._engine = FakeEngine(0.8)
    inference.run_inference(symbols=[ETH])
    d = MetaStrategyDecision.objects.get()
    assert d.profile == "patient"
    decision = size_signal(_published_signal(d.trace_id), equity_usd=D("100000"), drawdown=0.0, exposure=0.0)
    payload = decision.data()
    assert (payload.profile, payload.profile_fallback, payload.execution_strategy, payload.horizon_bars) == (
        "patient", False, "limit", 2 * DEFAULT_PROFILE.horizon_bars)
    assert payload.final_size_usd > 0, payload.reason
    intent = intent_from_rl_decision(decision)
    assert intent.requested_strategy == "limit" and intent.trace_id == d.trace_id
    assert intent.params["profile"] == "patient" and intent.params["horizon_bars"] == 24
    intent_process(intent.pk)
    assert Order.objects.get(intent=intent).strategy == "limit"


def test_without_a_decision_the_rl_decision_and_intent_are_as_before(market, settings):
    from ai.sizing.services import size_signal
    from trading.execution.services import intent_from_rl_decision

    settings.RL_META_STRATEGY_ENABLED = False
    inference._engine = FakeEngine(0.8)
    inference.run_inference(symbols=[ETH])
    sig = _published_signal(signals_trace())
    decision = size_signal(sig, equity_usd=D("100000"), drawdown=0.0, exposure=0.0)
    p = decision.data()
    assert (p.profile, p.profile_fallback, p.execution_strategy, p.horizon_bars) == (None, False, None, None)
    intent = intent_from_rl_decision(decision)
    assert intent.requested_strategy == "smart" and "profile" not in intent.params


def signals_trace() -> str:
    from qtweb.events.models import Event

    return Event.objects.get(type="signal.generated").trace_id


# --- learning ---------------------------------------------------------------------------------


def _decision(trace_id="trace-meta-1", profile="patient", **kw) -> MetaStrategyDecision:
    p = profile_named(profile)
    fields = {"created_at": timezone.now() - timedelta(minutes=5), "symbol": ETH, "timeframe": "5m",
              "regime": "range", "group": "layer1", "profile": p.name, "fallback": False, "reason": "test",
              "ensemble_threshold": p.ensemble_threshold, "horizon_bars": p.horizon_bars,
              "execution_strategy": p.execution_strategy, "trade": p.trade, "trace_id": trace_id, **kw}
    return MetaStrategyDecision.objects.create(**fields)


def _envelope(kind: str, payload: dict, trace_id: str):
    from qtweb.events.schemas import build_envelope

    return build_envelope(kind, payload, trace_id=trace_id, source="exec-risk-service")


def _closed(position_id="17", pnl="25", amount="1", price="2500", trace_id="trace-meta-1"):
    return _envelope("position.closed", {
        "position_id": position_id, "symbol": ETH, "side": "long", "amount": amount, "entry_price": price,
        "exit_price": price, "pnl_usd": pnl, "fees_usd": "1", "exit_reason": "take_profit",
        "opened_at": timezone.now() - timedelta(minutes=1)}, trace_id)


def _opened(position_id="17", trace_id="trace-meta-1"):
    return _envelope("position.opened", {
        "position_id": position_id, "symbol": ETH, "side": "long", "amount": "1", "entry_price": "2500",
        "size_usd": "2500", "opened_at": timezone.now() - timedelta(minutes=1)}, trace_id)


@pytest.mark.parametrize(("pnl", "amount", "price", "reward"), [
    ("25", "1", "2500", 0.01),
    ("-50", "2", "2500", -0.01),
    ("0", "0.5", "3000", 0.0),
])
def test_a_closed_position_rewards_its_decision_once(pnl, amount, price, reward):
    from ai.meta.services import learn_from_closed, load_bandit

    d = _decision()
    event = _closed(pnl=pnl, amount=amount, price=price)
    assert learn_from_closed(event) == pytest.approx(reward)
    assert learn_from_closed(event) is None  # the same event again: nothing learned twice
    d.refresh_from_db()
    assert d.reward == pytest.approx(reward) and d.position_id == "17" and d.rewarded_at is not None
    assert d.pnl_usd == D(pnl) and d.notional_usd == D(amount) * D(price)
    state = MetaStrategyState.objects.get()
    assert state.rewards_applied == 1
    s = load_bandit().stats(Context("range", "layer1"), "patient")
    assert s.n == 1 and s.mean == pytest.approx(reward)


def test_the_reward_finds_the_decision_through_the_opened_position_when_closed_under_another_trace():
    from ai.meta.services import learn_from_closed, link_position

    opener = _decision(trace_id="trace-open")
    later = _decision(trace_id="trace-reversal", profile="default", created_at=timezone.now())
    assert link_position(_opened(trace_id="trace-open"))
    assert learn_from_closed(_closed(trace_id="trace-reversal")) == pytest.approx(0.01)
    opener.refresh_from_db()
    later.refresh_from_db()
    assert opener.reward == pytest.approx(0.01) and later.reward is None


def test_a_reversal_pass_decision_is_never_rewarded_for_an_older_position():
    from ai.meta.services import learn_from_closed

    _decision(trace_id="trace-reversal", profile="default", created_at=timezone.now())  # after it opened
    assert learn_from_closed(_closed(trace_id="trace-reversal")) is None
    assert not MetaStrategyState.objects.exists()


def test_a_position_no_decision_opened_teaches_nothing():
    from ai.meta.services import learn_from_closed

    assert learn_from_closed(_closed(trace_id=uuid.uuid4().hex)) is None
    assert not MetaStrategyState.objects.exists()


def test_a_stored_state_that_cannot_be_loaded_is_refused():
    from ai.meta.services import load_bandit, save_bandit

    MetaStrategyState.objects.create(pk=1, bandit={"version": 99}, updated_at=timezone.now())
    with pytest.raises(ValueError, match="version"):
        load_bandit()
    with pytest.raises(ValueError):
        save_bandit("not a bandit")


# --- API and admin ----------------------------------------------------------------------------


def test_api_lists_decisions_and_the_agents_state(admin_client):
    from ai.meta.services import save_bandit

    ctx = Context("range", "layer1")
    b = ContextualBandit(min_pulls=2)
    for r in (0.01, 0.012, 0.011):
        b.update(ctx, "default", r)
    save_bandit(b)
    _decision(trace_id="trace-api-1")
    _decision(trace_id="trace-api-2", profile="stand_aside")
    body = admin_client.get("/api/meta-strategy/decisions/?profile=stand_aside").json()
    rows = body["results"] if isinstance(body, dict) else body
    assert [r["trace_id"] for r in rows] == ["trace-api-2"]
    state = admin_client.get("/api/meta-strategy/").json()
    assert state["enabled"] is False and state["default_profile"] == "default"
    assert state["choices"] == [{"regime": "range", "group": "layer1", "profile": "default", "fallback": False,
                                 "reason": state["choices"][0]["reason"]}]
    assert {a["profile"] for a in state["arms"]} == {"default"}


def test_api_needs_authentication(client):
    assert client.get("/api/meta-strategy/decisions/").status_code in (401, 403)
    assert client.get("/api/meta-strategy/").status_code in (401, 403)


def test_admin_pages_are_read_only(admin_client):
    from ai.meta.services import save_bandit

    save_bandit(ContextualBandit())
    d = _decision()
    assert admin_client.get("/admin/ai/metastrategydecision/").status_code == 200
    page = admin_client.get(f"/admin/ai/metastrategydecision/{d.pk}/change/")
    assert page.status_code == 200 and b"Save" not in page.content
    assert admin_client.get("/admin/ai/metastrategystate/").status_code == 200
    assert admin_client.get("/admin/ai/metastrategydecision/add/").status_code == 403


def test_a_share_of_live_choices_explores_so_every_profile_keeps_learning(settings):
    from ai.meta.services import choose_profiles

    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, 300)))
    bars = {ETH: np.column_stack([np.arange(300), closes, closes, closes, closes, np.ones(300)])}
    settings.RL_META_EXPLORATION_RATE = 0.0
    cautious = choose_profiles(bars, {ETH: "layer1"}).by_symbol[ETH].choice
    assert cautious.fallback and cautious.profile == DEFAULT_PROFILE  # untrained: the default, flagged
    settings.RL_META_EXPLORATION_RATE = 0.5
    reasons = [choose_profiles(bars, {ETH: "layer1"}).by_symbol[ETH].choice.reason for _ in range(200)]
    explored = sum(r.startswith("exploring (RL_META_EXPLORATION_RATE)") for r in reasons)
    assert 60 <= explored <= 140  # about half, never all or none
