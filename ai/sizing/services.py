"""RL sizing as a service: size a signal and publish `rl.decision`; record experience; retrain.

size_signal(signal) takes a `signal.generated` envelope (or its payload dict plus trace_id= and
signal_event_id=), gathers the sizer's state and publishes exactly one `rl.decision` under the
signal's trace id, carrying what execution needs of the signal (its event id, price,
confidence, model versions):
- probability: p_up = (score + 1) / 2 of the ensemble (score = 2p - 1, ai/ensemble.py);
- volatility: per-bar std of log returns of the last stored bars of the symbol;
- recent PnL and the payoff ratio (avg win / avg loss): from the stored RlExperience rows
  (payoff ratio 1.0 until MIN_TRADES_FOR_PAYOFF wins and losses exist);
- equity, drawdown (from the UTC day's starting equity) and exposure (gross, as a share of
  equity): from the account snapshot the execution side keeps (trading/snapshots.py), unless
  the caller passes them. A snapshot that is missing or older than
  ACCOUNT_SNAPSHOT_MAX_AGE_SECONDS gives no size, with the reason on the rl.decision: sizing
  fails closed on an account it cannot see. Allowed size: RL_SIZING_ALLOWED_FRACTION (0.1) of
  equity; policy max position: the risk policy's max_position_usd (risk/services/policy.py).
The state the sizer saw is kept in the cache per symbol, so the `position.closed` consumer
(ai/subscribers.py) can store it with the experience ("features at entry").

record_experience(envelope) stores one RlExperience per position_id, whatever the number of
deliveries. retrain() trains a new agent version on the paper market's candles.
"""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction

from ai.sizing import agent as agent_mod
from core.decimals import to_decimal
from core.enums import SignalAction
from core.limits import TEXT_MAX
from qtweb.events import EventEnvelope, EventType
from qtweb.events.bus import publish
from qtweb.events.schemas import PositionClosed, SignalGenerated
from qtweb.health.status import report_module
from qtweb.logging import get_logger
from qtweb.queues import Service, service_shadow
from qtweb.tracing import current_trace_id

if TYPE_CHECKING:
    from trading.snapshots import AccountSnapshot

log = get_logger(__name__)

# Sizing inputs that change slowly are memoised per process for a few seconds (a bar's burst of
# 40 signals reads them once). They shape the size, they do not enforce a limit: the risk
# validator checks the live account for every intent.
ACCOUNT_MEMO_SECONDS = 2.0  # the account snapshot (its age is checked on every signal)
STATS_MEMO_SECONDS = 30.0  # payoff ratio and recent PnL (change when a position closes), volatility (per bar)
_memo: dict[tuple, tuple[float, object]] = {}


def _memoised(key: tuple, ttl: float, fn):
    import time

    now = time.monotonic()
    hit = _memo.get(key)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    value = fn()
    _memo[key] = (now, value)
    return value


def forget_memos() -> None:
    _memo.clear()


MIN_TRADES_FOR_PAYOFF = 10
EXPERIENCE_WINDOW = 200
RECENT_TRADES = 5
ENTRY_FEATURES_TTL = 7 * 24 * 3600


def _entry_key(symbol: str) -> str:
    return f"ai:rl:entry:{symbol}"


def payoff_stats(limit: int = EXPERIENCE_WINDOW) -> tuple[float, float]:
    """(payoff ratio = avg win / avg loss, mean PnL of the last RECENT_TRADES) from experience."""
    from ai.models import RlExperience

    pnls = [float(p) for p in RlExperience.objects.order_by("-closed_at").values_list("pnl", flat=True)[:limit]]
    wins = [p for p in pnls if p > 0]
    losses = [-p for p in pnls if p < 0]
    ratio = agent_mod.DEFAULT_PAYOFF_RATIO
    if len(wins) >= MIN_TRADES_FOR_PAYOFF and len(losses) >= MIN_TRADES_FOR_PAYOFF:
        ratio = float(np.mean(wins) / np.mean(losses))
    recent = float(np.mean(pnls[:RECENT_TRADES])) if pnls else 0.0
    return ratio, recent


def symbol_volatility(symbol: str, timeframe: str = "5m", window: int = 20, exchange: str = "paper") -> float:
    """Per-bar std of log returns of the last `window` stored bars; 0.0 without enough bars."""
    from trading.marketdata.selectors import last_bars
    from trading.models import Symbol

    row = Symbol.objects.filter(exchange=exchange, symbol=symbol).values_list("pk", flat=True).first()
    if row is None:
        return 0.0
    closes = last_bars([row], timeframe, window + 1)[row][:, 4] if window > 0 else np.empty(0)
    if len(closes) < 3 or np.any(closes <= 0):
        return 0.0
    return float(np.std(np.diff(np.log(closes))))


def _no_size(symbol: str, action: SignalAction, reason: str) -> dict:
    return {"symbol": symbol, "action": action, "agent_action": 0.0, "kelly_fraction": 0.0,
            "final_size_usd": Decimal("0.00"), "agent_trained": False, "reason": f"no size: {reason}"[:TEXT_MAX]}


def _account_from_snapshot() -> tuple[AccountSnapshot | None, float | None, str | None]:
    """(snapshot, its age in seconds, why it cannot be used or None)."""
    from trading.exchanges.account import exchange_id
    from trading.snapshots import snapshot_get

    exchange = exchange_id()
    snapshot = _memoised(("account", exchange), ACCOUNT_MEMO_SECONDS, lambda: snapshot_get(exchange))
    if snapshot is None:
        return None, None, f"no account snapshot of {exchange} from the execution side yet"
    age = max(0.0, snapshot.age_seconds())
    bound = float(settings.ACCOUNT_SNAPSHOT_MAX_AGE_SECONDS)
    if age > bound:
        return snapshot, age, f"the account snapshot of {exchange} is {age:.0f}s old (bound {bound:.0f}s)"
    if snapshot.equity_usd <= 0:
        return snapshot, age, f"the account snapshot of {exchange} shows no equity ({snapshot.equity_usd} USD)"
    return snapshot, age, None


# Prefixed to the reason of an rl.decision made while AI_SERVICE_SHADOW is on.
AI_SHADOW_NOTE = "AI_SERVICE_SHADOW (recorded, not for execution): "


def _shadowed(payload: dict, trace_id: str | None) -> dict:
    """AI_SERVICE_SHADOW: the decision is still published and recorded (the audit stream, the
    dashboard), marked `shadow` so execution makes no intent of it (trading/execution/services/
    sources.py)."""
    if not service_shadow(Service.AI):
        return payload
    log.info("rl.decision in shadow: recorded, not for execution", symbol=payload["symbol"],
             final_size_usd=str(payload["final_size_usd"]), trace_id=trace_id or current_trace_id())
    return {**payload, "shadow": True, "reason": f"{AI_SHADOW_NOTE}{payload['reason']}"[:TEXT_MAX]}


def _report_sizer(status: str, reason: str, **details) -> None:
    """The sizer is the ai-service's `rl_agent` module in the health graph."""
    report_module(Service.AI.value, "rl_agent", status, reason, **details)


def size_signal(signal: EventEnvelope | dict[str, Any], *, trace_id: str | None = None,
                signal_event_id: uuid.UUID | None = None, equity_usd=None, allowed_size_usd=None,
                drawdown: float | None = None, exposure: float | None = None, max_position_usd=None,
                agent: agent_mod.TrainedAgent | None = None, use_latest_agent: bool = True) -> EventEnvelope:
    """Size one signal.generated and publish one rl.decision with the signal's trace id."""
    try:
        return _size_signal(signal, trace_id=trace_id, signal_event_id=signal_event_id, equity_usd=equity_usd,
                            allowed_size_usd=allowed_size_usd, drawdown=drawdown, exposure=exposure,
                            max_position_usd=max_position_usd, agent=agent, use_latest_agent=use_latest_agent)
    except Exception as exc:
        _report_sizer("DEGRADED", f"sizing failed: {type(exc).__name__}: {exc}")
        raise


def _size_signal(signal: EventEnvelope | dict[str, Any], *, trace_id: str | None, signal_event_id: uuid.UUID | None,
                 equity_usd, allowed_size_usd, drawdown: float | None, exposure: float | None, max_position_usd,
                 agent: agent_mod.TrainedAgent | None, use_latest_agent: bool) -> EventEnvelope:
    if isinstance(signal, EventEnvelope):
        trace_id = trace_id or signal.trace_id
        signal_event_id = signal.event_id
        sig: SignalGenerated = signal.data()
    else:
        if signal_event_id is None:
            raise TypeError("size_signal(payload_dict) needs signal_event_id= (the signal's event id)")
        sig = SignalGenerated.model_validate(signal)
    symbol, action = sig.symbol, sig.action
    p_up = (float(sig.score) + 1.0) / 2.0
    carried = {"signal_event_id": signal_event_id, "confidence": sig.confidence, "reference_price": sig.price,
               "model_versions": dict(sig.model_versions)}
    # The meta-strategy's profile for this signal, when inference chose one, travels on to execution.
    from ai.meta.services import profile_fields

    carried.update(profile_fields(trace_id, symbol))
    snapshot_age = None
    if drawdown is None or exposure is None or equity_usd is None:
        snapshot, snapshot_age, unusable = _account_from_snapshot()
        if unusable is not None:
            log.warning("signal not sized: account state unknown", symbol=symbol, reason=unusable)
            _report_sizer("DEGRADED", f"refused to size: {unusable}", account_snapshot_age_seconds=snapshot_age)
            return publish(EventType.RL_DECISION, _shadowed({**_no_size(symbol, action, unusable), **carried,
                                                             "account_snapshot_age_seconds": snapshot_age}, trace_id),
                           trace_id=trace_id)
        drawdown = float(snapshot.drawdown) if drawdown is None else drawdown
        exposure = float(snapshot.exposure) if exposure is None else exposure
        equity_usd = snapshot.equity_usd if equity_usd is None else equity_usd
    equity = to_decimal(equity_usd, "equity_usd")
    if allowed_size_usd is None:
        allowed_size_usd = equity * to_decimal(settings.RL_SIZING_ALLOWED_FRACTION, "RL_SIZING_ALLOWED_FRACTION")
    if max_position_usd is None:
        from risk.services.policy import policy_get

        max_position_usd = policy_get().max_position_usd
    payoff, recent_pnl_usd = _memoised(("payoff",), STATS_MEMO_SECONDS, payoff_stats)
    recent_pnl = recent_pnl_usd / float(equity) if equity > 0 else 0.0
    timeframe = sig.timeframe.value
    volatility = _memoised(("volatility", symbol, timeframe), STATS_MEMO_SECONDS,
                           lambda: symbol_volatility(symbol, timeframe, exchange=settings.MARKET_EXCHANGE))
    kelly_only = settings.RL_SIZING_MODE == "kelly"
    if agent is None and use_latest_agent and not kelly_only:
        agent = agent_mod.latest_agent()
    no_agent = agent_mod.KELLY_MODE_REASON if kelly_only else agent_mod.NO_AGENT_REASON
    decision = agent_mod.decide(symbol, p_up, volatility, drawdown, exposure, recent_pnl, equity, allowed_size_usd,
                                payoff, action=action, agent=agent, max_position_usd=max_position_usd,
                                no_agent_reason=no_agent)
    envelope = publish(EventType.RL_DECISION, _shadowed({**decision, **carried,
                                                         "account_snapshot_age_seconds": snapshot_age}, trace_id),
                       trace_id=trace_id)
    if agent is not None:
        agent_name = agent.path.name if agent.path is not None else "in-memory"
        _report_sizer("HEALTHY", f"PPO agent {agent_name} serving; last decision sized {symbol}", sizer="ppo",
                      agent_version=agent_name)
    elif kelly_only:
        _report_sizer("HEALTHY", f"Kelly-only by RL_SIZING_MODE=kelly; last decision sized {symbol}", sizer="kelly")
    else:  # PPO asked for, none loadable: the sizer still works, on its fallback
        _report_sizer("DEGRADED", f"{no_agent}: no loadable PPO agent (RL_SIZING_MODE=ppo)", sizer="kelly")
    cache.set(_entry_key(symbol), {
        "probability_up": p_up, "volatility": volatility, "drawdown": drawdown, "exposure": exposure,
        "recent_pnl": recent_pnl, "payoff_ratio": payoff, "equity_usd": str(equity),
        "allowed_size_usd": str(allowed_size_usd), "agent_action": decision["agent_action"],
        "kelly_fraction": decision["kelly_fraction"], "final_size_usd": str(decision["final_size_usd"]),
        "agent_trained": decision["agent_trained"], "decision_trace_id": envelope.trace_id,
    }, ENTRY_FEATURES_TTL)
    return envelope


def record_experience(event: EventEnvelope) -> bool:
    """Store the closed position once (by position_id). True when stored now, False if already there."""
    from ai.models import RlExperience

    p: PositionClosed = event.data()
    if RlExperience.objects.filter(position_id=p.position_id).exists():
        return False
    features = cache.get(_entry_key(p.symbol)) or {}
    try:
        with transaction.atomic():
            RlExperience.objects.create(
                symbol=p.symbol, position_id=p.position_id, side=p.side, opened_at=p.opened_at,
                closed_at=event.timestamp, pnl=p.pnl_usd, fees=p.fees_usd, notional_usd=p.amount * p.entry_price,
                features=features, trace_id=event.trace_id)
    except IntegrityError:  # a concurrent delivery stored it first
        return False
    return True


def retrain(*, timesteps: int | None = None, seed: int = 0, bars: int = 2000, timeframe: str = "5m") -> dict:
    """Train a new PPO version on the paper market's stored candles and save it (the newest
    loadable version serves). Publishes learning.event retrain_completed (or _failed)."""
    from ai.features.dataset import bars_from_db, sectors_from_db
    from ai.inference import historical_probabilities
    from ai.sizing.env import SizingEnv

    timesteps = int(timesteps or getattr(settings, "RL_SIZING_TIMESTEPS", 20_000))
    try:
        series = {s: b for s, b in bars_from_db("paper", timeframe, None, bars).items() if len(b)}
        try:
            # The state's probability is what the serving ensemble said at each bar.
            probs = historical_probabilities(series, sectors=sectors_from_db("paper", list(series)))
            env = SizingEnv(list(series.values()), probabilities=[probs[s] for s in series])
            probability_source = "ensemble"
        except ValueError:  # no champion yet: the env's momentum stand-in
            env = SizingEnv(list(series.values()))
            probability_source = "momentum (no champion)"
        trained = agent_mod.train(env, timesteps=timesteps, seed=seed)
        payoff, _ = payoff_stats()
        directory = agent_mod.next_version_dir()
        from ai.models import RlExperience

        meta = agent_mod.save(trained, directory, extra={
            "payoff_ratio": payoff, "experiences": RlExperience.objects.count(), "timeframe": timeframe,
            "probability_source": probability_source})
    except Exception as exc:
        log.exception("rl sizing retrain failed")
        publish(EventType.LEARNING_EVENT, {"kind": "retrain_failed", "model_type": agent_mod.MODEL_TYPE,
                                          "reason": str(exc)[:1000] or type(exc).__name__})
        raise
    publish(EventType.LEARNING_EVENT, {"kind": "retrain_completed", "model_type": agent_mod.MODEL_TYPE,
                                      "model_version": directory.name,
                                      "metrics": {"timesteps": float(timesteps), "payoff_ratio": payoff},
                                      "reason": f"state probability from {probability_source}"})
    return {"path": str(directory), "artifact_sha256": meta["artifact_sha256"], "timesteps": timesteps,
            "probability_source": probability_source}
