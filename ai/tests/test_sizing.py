"""RL position sizing: Kelly caps, the environment, a tiny PPO run, rl.decision, experience."""
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ai.sizing import agent as agent_mod
from ai.sizing.env import SizingEnv
from ai.sizing.kelly import breakeven_probability, final_size_usd, full_kelly, kelly_fraction

# --- Kelly (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize("p,b,expected", [
    (0.6, 1.0, 0.2),        # 0.6 - 0.4 / 1
    (0.5, 2.0, 0.25),       # 0.5 - 0.5 / 2
    (0.55, 1.5, 0.25),      # 0.55 - 0.45 / 1.5
    (0.5, 1.0, 0.0),        # no edge
    (0.4, 1.0, 0.0),        # negative edge clipped
    (1.0, 1.0, 1.0),
    (0.0, 3.0, 0.0),
])
def test_full_kelly_table(p, b, expected):
    assert full_kelly(p, b) == pytest.approx(expected)


@pytest.mark.parametrize("p,b,fraction,cap,expected", [
    (0.6, 1.0, 0.25, 0.25, 0.05),
    (0.6, 1.0, 1.0, 0.25, 0.2),
    (0.9, 1.0, 1.0, 0.25, 0.25),     # capped
    (0.9, 1.0, 0.5, 0.1, 0.1),
    (0.45, 1.0, 0.25, 0.25, 0.0),
])
def test_fractional_kelly_table(p, b, fraction, cap, expected):
    assert kelly_fraction(p, b, fraction=fraction, max_fraction=cap) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [(-0.1, 1.0), (1.1, 1.0), (0.6, 0.0), (0.6, -1.0), (float("nan"), 1.0),
                                 (0.6, float("inf"))])
def test_kelly_rejects_bad_inputs(bad):
    with pytest.raises(ValueError):
        full_kelly(*bad)


@pytest.mark.parametrize("agent,allowed,k,equity,cap,expected", [
    (0.5, 1000, 0.05, 10000, None, "500.00"),       # agent binds
    (1.0, 1000, 0.05, 10000, None, "500.00"),       # kelly binds: 0.05 x 10,000
    (1.0, 1000, 0.2, 10000, 300, "300.00"),         # policy binds
    (1.0, 1000, 0.0, 10000, None, "0.00"),          # no edge
    (0.3, -5, 0.1, 10000, None, "0.00"),            # never negative
    (0.333, 1000, 0.25, 10000, None, "333.00"),
])
def test_final_size_table(agent, allowed, k, equity, cap, expected):
    size = final_size_usd(agent_fraction=agent, allowed_size_usd=allowed, kelly=k, equity_usd=equity,
                          max_position_usd=cap)
    assert isinstance(size, Decimal) and size == Decimal(expected)


money = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(p=unit, b=st.floats(min_value=0.01, max_value=100.0), fraction=unit, cap=unit, agent=unit,
       allowed=money, equity=money, policy=money)
@hsettings(max_examples=300, deadline=None)
def test_size_never_exceeds_any_cap(p, b, fraction, cap, agent, allowed, equity, policy):
    k = kelly_fraction(p, b, fraction=fraction, max_fraction=cap)
    assert 0.0 <= k <= cap
    size = final_size_usd(agent_fraction=agent, allowed_size_usd=allowed, kelly=k, equity_usd=equity,
                          max_position_usd=policy)
    assert Decimal(0) <= size
    assert size <= Decimal(str(agent)) * allowed
    assert size <= Decimal(str(k)) * equity
    assert size <= policy


@given(b=st.floats(min_value=0.01, max_value=100.0), data=st.data())
@hsettings(max_examples=200, deadline=None)
def test_zero_when_no_edge(b, data):
    p = data.draw(st.floats(min_value=0.0, max_value=breakeven_probability(b)))
    assert kelly_fraction(p, b, fraction=1.0, max_fraction=1.0) == pytest.approx(0.0, abs=1e-12)
    assert final_size_usd(agent_fraction=1.0, allowed_size_usd=1000, kelly=kelly_fraction(p, b),
                          equity_usd=10000) == Decimal("0.00")


# --- environment and agent -------------------------------------------------------------------


def _series(n=600, seed=0, drift=0.0):
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(drift, 0.003, n)))


def test_env_passes_gymnasium_check_env():
    env = SizingEnv([_series(seed=1), _series(seed=2)])
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(np.array([2.0], dtype=np.float32))  # clipped to 1
    assert np.isfinite(reward) and env.observation_space.contains(obs) and obs[3] == pytest.approx(1.0)


def test_env_zero_action_earns_nothing_and_fees_cost():
    env = SizingEnv([_series(seed=4)], horizon=5)
    env.reset(seed=0)
    _, reward, *_ = env.step(np.array([0.0], dtype=np.float32))
    assert reward == 0.0
    flat = np.full(300, 100.0)  # a flat market: any position loses the fees
    env = SizingEnv([flat], probabilities=[np.full(300, 0.7)], horizon=5)
    env.reset(seed=0)
    obs, reward, _, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["pnl"] == pytest.approx(-2 * env.fee_rate) and reward < 0
    assert obs[0] == pytest.approx(0.7) and obs[2] > 0  # drawdown after the loss


def test_env_refuses_series_too_short():
    with pytest.raises(ValueError, match="no series long enough"):
        SizingEnv([np.full(10, 100.0)])


def test_tiny_ppo_trains_saves_loads_and_decides(tmp_path):
    env = SizingEnv([_series(seed=5, drift=0.0005), _series(seed=6)], episode_length=16)
    trained = agent_mod.train(env, timesteps=256, n_steps=128, batch_size=64, n_epochs=2, seed=0)
    meta = agent_mod.save(trained, tmp_path / "v1")
    assert meta["model_type"] == agent_mod.MODEL_TYPE and "ppo.zip" in meta["files"]
    loaded = agent_mod.load(tmp_path / "v1")
    obs = np.array([0.7, 0.003, 0.0, 0.0, 0.0], dtype=np.float32)
    assert loaded.act(obs) == pytest.approx(trained.act(obs), abs=1e-6)
    d = agent_mod.decide("BTC/USDT", 0.7, 0.003, 0.0, 0.0, 0.0, Decimal("10000"), Decimal("1000"), 1.0,
                         agent=loaded, max_position_usd=Decimal("800"))
    assert d["agent_trained"] is True and d["action"] == "BUY"
    assert d["kelly_fraction"] == pytest.approx(0.25 * 0.4)
    assert d["final_size_usd"] <= min(Decimal(str(d["agent_action"])) * 1000, Decimal("1000"), Decimal("800"))
    assert "PPO agent" in d["reason"]
    # the newest loadable version is found; a corrupted one is skipped
    assert agent_mod.latest_agent(tmp_path) is not None
    (tmp_path / "v1" / "ppo.zip").write_bytes(b"tampered")
    agent_mod._cache.clear()
    assert agent_mod.latest_agent(tmp_path) is None
    from ai.forecasters.artifacts import ArtifactCorrupt

    with pytest.raises(ArtifactCorrupt):
        agent_mod.load(tmp_path / "v1")


def test_kelly_only_fallback_is_flagged():
    d = agent_mod.decide("ETH/USDT", 0.3, 0.01, 0.0, 0.0, 0.0, Decimal("10000"), Decimal("5000"), 1.0)
    assert d["agent_trained"] is False and d["reason"] == agent_mod.NO_AGENT_REASON
    assert d["action"] == "SELL" and d["kelly_fraction"] == pytest.approx(0.25 * 0.4)
    assert d["final_size_usd"] == Decimal("1000.00")  # Kelly binds: 0.1 x 10,000
    hold = agent_mod.decide("ETH/USDT", 0.55, 0.01, 0.0, 0.0, 0.0, 10000, 5000, 1.0, action="HOLD")
    assert hold["final_size_usd"] == Decimal("0.00") and "HOLD" in hold["reason"]


# --- services (database) ---------------------------------------------------------------------


@pytest.fixture
def no_agents(settings, tmp_path, clean_cache):
    settings.MODEL_ARTIFACTS_DIR = str(tmp_path / "models")
    agent_mod._cache.clear()


@pytest.mark.django_db
def test_size_signal_publishes_one_rl_decision_with_the_signals_trace_id(no_agents):
    from ai.sizing.services import size_signal
    from qtweb.events.models import Event
    from qtweb.events.schemas import build_envelope

    signal = build_envelope("signal.generated", {
        "symbol": "BTC/USDT", "timeframe": "5m", "action": "BUY", "confidence": 0.7, "score": 0.4,
        "ensemble_agreement": 1.0, "models_voted": 4}, trace_id="trace-sizing-0001", source="ai-service")
    env = size_signal(signal, equity_usd=Decimal("10000"), allowed_size_usd=Decimal("2000"), drawdown=0.0,
                      exposure=0.0)
    rows = Event.objects.filter(type="rl.decision")
    assert rows.count() == 1
    row = rows.get()
    assert row.trace_id == "trace-sizing-0001" == env.trace_id
    p = row.payload
    assert p["symbol"] == "BTC/USDT" and p["action"] == "BUY" and p["agent_trained"] is False
    assert p["reason"] == agent_mod.KELLY_MODE_REASON  # the default sizer
    assert p["kelly_fraction"] == pytest.approx(0.25 * 0.4)  # p_up = 0.7, payoff 1
    assert Decimal(p["final_size_usd"]) == Decimal("1000.00")


def _closed(position_id="pos-1", pnl="12.5"):
    from qtweb.events.schemas import build_envelope

    return build_envelope("position.closed", {
        "position_id": position_id, "symbol": "BTC/USDT", "side": "long", "amount": "0.01",
        "entry_price": "50000", "exit_price": "51250", "pnl_usd": pnl, "fees_usd": "0.5",
        "exit_reason": "take_profit", "opened_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat()},
        trace_id="trace-closed-0001", source="exec-risk-service")


@pytest.mark.django_db
def test_position_closed_is_stored_once_even_if_delivered_twice(no_agents):
    from ai.models import RlExperience
    from ai.subscribers import record_rl_experience
    from qtweb.events.registry import get_subscription
    from qtweb.queues import Queue

    sub = get_subscription("ai.sizing.record_experience")
    assert sub is not None and sub.queue == Queue.LEARNING and sub.wants("position.closed")
    event = _closed()
    record_rl_experience(event)
    record_rl_experience(event)
    assert RlExperience.objects.count() == 1
    e = RlExperience.objects.get()
    assert e.position_id == "pos-1" and e.pnl == Decimal("12.5") and e.notional_usd == Decimal("500")
    assert e.trace_id == "trace-closed-0001"


def test_retrain_task_is_routed_to_learning_and_scheduled():
    import ai.tasks  # noqa: F401
    from qtweb.celery import app
    from qtweb.schedules import SCHEDULES

    assert "ai.sizing.retrain_rl_agent" in app.tasks
    route = app.amqp.router.route({}, "ai.sizing.retrain_rl_agent")
    assert route["queue"].name == "learning"
    assert SCHEDULES["qt:ai.sizing.retrain_rl_agent"].queue == "learning"


@pytest.mark.django_db
def test_retrain_on_the_paper_market_then_size_signal_uses_the_agent_in_ppo_mode(no_agents, settings):
    from ai.sizing.services import retrain, size_signal
    from qtweb.events.models import Event
    from trading.simulator.service import seed_history

    seed_history(days=1, seed=7)
    out = retrain(timesteps=256, bars=300)
    assert out["path"].endswith("v1") and len(out["artifact_sha256"]) == 64
    learning = Event.objects.get(type="learning.event")
    assert learning.payload["kind"] == "retrain_completed" and learning.payload["model_version"] == "v1"
    signal = {"symbol": "BTC/USDT", "timeframe": "5m", "action": "BUY", "confidence": 0.8, "score": 0.6,
              "ensemble_agreement": 1.0, "models_voted": 4}
    # The default, Kelly-only, leaves the trained agent unused and says why.
    size_signal(signal, trace_id="trace-sizing-0003", signal_event_id=uuid.uuid4(), drawdown=0.0, exposure=0.0,
                equity_usd=Decimal("10000"), allowed_size_usd=Decimal("3000"), max_position_usd=Decimal("900"))
    kelly = Event.objects.get(type="rl.decision", trace_id="trace-sizing-0003").payload
    assert kelly["agent_trained"] is False and kelly["reason"].startswith("RL_SIZING_MODE=kelly")
    settings.RL_SIZING_MODE = "ppo"
    env = size_signal({"symbol": "BTC/USDT", "timeframe": "5m", "action": "BUY", "confidence": 0.8, "score": 0.6,
                       "ensemble_agreement": 1.0, "models_voted": 4}, trace_id="trace-sizing-0002",
                      signal_event_id=uuid.uuid4(), drawdown=0.0, exposure=0.0, equity_usd=Decimal("10000"),
                      allowed_size_usd=Decimal("3000"), max_position_usd=Decimal("900"))
    p = Event.objects.get(type="rl.decision", trace_id="trace-sizing-0002").payload
    assert env.trace_id == "trace-sizing-0002" and p["agent_trained"] is True and "PPO agent" in p["reason"]
    assert Decimal(p["final_size_usd"]) <= min(Decimal("900"), Decimal(str(p["agent_action"])) * 3000,
                                               Decimal(str(p["kelly_fraction"])) * 10000)


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_cache")
def test_a_trade_signal_is_sized_by_the_subscriber_and_hold_is_not():
    from ai.subscribers import size_trade_signal
    from qtweb.events.bus import publish as bus_publish
    from qtweb.events.models import Event as EventRow

    base = {"symbol": "BTC/USDT:USDT", "timeframe": "5m", "confidence": 0.7, "score": 0.4,
            "ensemble_agreement": 1.0, "models_voted": 4}
    buy = bus_publish("signal.generated", {**base, "action": "BUY"}, trace_id="sizing-trace-0001")
    hold = bus_publish("signal.generated", {**base, "action": "HOLD", "score": 0.1, "confidence": 0.55},
                       trace_id="sizing-trace-0002")
    size_trade_signal(buy)
    size_trade_signal(hold)
    decisions = EventRow.objects.filter(type="rl.decision")
    assert [d.trace_id for d in decisions] == ["sizing-trace-0001"]
    assert decisions[0].payload["symbol"] == "BTC/USDT:USDT" and decisions[0].payload["action"] == "BUY"


@pytest.mark.django_db
def test_retrain_feeds_the_env_the_ensembles_historical_probabilities(no_agents):
    from io import StringIO

    from django.core.management import call_command

    from ai import inference
    from ai.sizing.services import retrain
    from qtweb.events.models import Event
    from trading.simulator.service import seed_history

    seed_history(days=2, seed=4)
    call_command("train_models", "--max-epochs", "1", "--bars", "400", "--sample-every", "8", stdout=StringIO())
    inference._engine = None
    try:
        from ai.features.dataset import bars_from_db

        bars = bars_from_db("paper", "5m", ["BTC/USDT:USDT", "ETH/USDT:USDT"], 300)
        probs = inference.historical_probabilities(bars)
        p = probs["BTC/USDT:USDT"]
        assert len(p) == 300 and (p[:100] == 0.5).all()  # the warm-up has no clean feature row
        assert ((p >= 0) & (p <= 1)).all() and p[200:].std() > 0
        out = retrain(timesteps=256, bars=300)
        assert out["probability_source"] == "ensemble"
        done = Event.objects.filter(type="learning.event", payload__kind="retrain_completed").latest("timestamp")
        assert "ensemble" in done.payload["reason"]
    finally:
        inference._engine = None
        from django.core.cache import cache

        cache.delete("health:modules:ai-service")


@pytest.mark.django_db
def test_default_sizing_uses_the_account_snapshot_equity_and_the_policy_cap(no_agents, settings):
    """Without explicit inputs the sizer reads the account snapshot the execution side wrote
    (here by a real refresh of the paper account), capped by the policy's max position."""
    from ai.sizing.services import size_signal
    from qtweb.events.models import Event
    from risk.services.policy import policy_update
    from trading.exchanges.paper import create_account
    from trading.execution.snapshot import account_snapshot_refresh
    from trading.snapshots import snapshot_forget, snapshot_get

    settings.MARKET_EXCHANGE = "paper"
    snapshot_forget("paper")
    policy_update(changes={"max_position_usd": "250"}, updated_by="test", reason="a small cap")
    create_account("default", {"USDT": "50000"})
    account_snapshot_refresh(reason="test")
    assert snapshot_get("paper").equity_usd == Decimal("50000.00")
    size_signal(_signal_payload(), trace_id="trace-sizing-cap1", signal_event_id=uuid.uuid4())
    p = Event.objects.get(type="rl.decision").payload
    assert Decimal(p["final_size_usd"]) <= Decimal("250") and Decimal(p["final_size_usd"]) > 0
    assert 0 <= p["account_snapshot_age_seconds"] < 60


def _signal_payload(**kw) -> dict:
    return {"symbol": "BTC/USDT", "timeframe": "5m", "action": "BUY", "confidence": 0.9, "score": 0.8,
            "ensemble_agreement": 1.0, "models_voted": 4, **kw}


@pytest.mark.django_db
def test_no_account_snapshot_means_no_size_with_the_reason_on_the_decision(no_agents, settings):
    """Sizing fails closed: it never sizes as if drawdown and exposure were 0 when it cannot see
    the account. The decision still carries the signal, so the record is complete."""
    from ai.sizing.services import size_signal
    from trading.snapshots import snapshot_forget

    settings.MARKET_EXCHANGE = "paper"
    snapshot_forget("paper")
    sid = uuid.uuid4()
    env = size_signal(_signal_payload(price="61000"), trace_id="trace-sizing-none", signal_event_id=sid)
    d = env.data()
    assert d.final_size_usd == 0 and d.kelly_fraction == 0 and d.agent_action == 0
    assert d.reason == "no size: no account snapshot of paper from the execution side yet"
    assert d.signal_event_id == sid and d.reference_price == Decimal("61000") and d.confidence == 0.9
    assert d.account_snapshot_age_seconds is None


@pytest.mark.django_db
def test_a_stale_or_unreadable_account_snapshot_means_no_size(no_agents, settings, redis_conn):
    from datetime import timedelta

    from ai.sizing.services import forget_memos, size_signal
    from trading.snapshots import KEY, AccountSnapshot, snapshot_store

    settings.MARKET_EXCHANGE = "paper"
    settings.ACCOUNT_SNAPSHOT_MAX_AGE_SECONDS = 180
    old = datetime.now(UTC) - timedelta(seconds=600)
    snapshot_store(AccountSnapshot(exchange="paper", taken_at=old, balance_usd=Decimal("1000"),
                                   equity_usd=Decimal("1000"), day_start_equity_usd=Decimal("1000")))
    d = size_signal(_signal_payload(), trace_id="trace-sizing-stale", signal_event_id=uuid.uuid4()).data()
    assert d.final_size_usd == 0 and "snapshot of paper is 600s old (bound 180s)" in d.reason
    assert d.account_snapshot_age_seconds == pytest.approx(600, abs=5)
    forget_memos()
    redis_conn.set(KEY.format(exchange="paper"), b"{not json")
    d = size_signal(_signal_payload(), trace_id="trace-sizing-bad1", signal_event_id=uuid.uuid4()).data()
    assert d.final_size_usd == 0 and "no account snapshot" in d.reason
    forget_memos()
    snapshot_store(AccountSnapshot(exchange="paper", taken_at=datetime.now(UTC), balance_usd=Decimal("1000"),
                                   equity_usd=Decimal("1000"), day_start_equity_usd=Decimal("1250"),
                                   exposure_by_symbol={"ETH/USDT": Decimal("-500")}))
    env = size_signal(_signal_payload(), trace_id="trace-sizing-fresh", signal_event_id=uuid.uuid4())
    assert env.data().final_size_usd > 0
    from django.core.cache import cache

    entry = cache.get("ai:rl:entry:BTC/USDT")
    assert entry["drawdown"] == pytest.approx(0.2) and entry["exposure"] == pytest.approx(0.5)
