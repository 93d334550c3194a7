"""RL sizing as a service: size a signal and publish `rl.decision`; record experience; retrain.

size_signal(signal) takes a `signal.generated` envelope (or its payload dict plus trace_id=),
gathers the sizer's state and publishes exactly one `rl.decision` under the signal's trace id:
- probability: p_up = (score + 1) / 2 of the ensemble (score = 2p - 1, ai/ensemble.py);
- volatility: per-bar std of log returns of the last stored bars of the symbol (paper market);
- recent PnL and the payoff ratio (avg win / avg loss): from the stored RlExperience rows
  (payoff ratio 1.0 until MIN_TRADES_FOR_PAYOFF wins and losses exist);
- equity: the paper account `default`'s USDT total on the paper exchange, else
  RL_SIZING_EQUITY_USD; allowed size: RL_SIZING_ALLOWED_FRACTION (0.1) of equity; policy max
  position: the risk policy's max_position_usd (risk/services/policy.py); drawdown (from the UTC
  day's starting equity) and exposure (gross, as a share of equity) from the execution layer's
  positions (risk/selectors.py) unless the caller passes them.
The state the sizer saw is kept in the cache per symbol, so the `position.closed` consumer
(ai/subscribers.py) can store it with the experience ("features at entry").

record_experience(envelope) stores one RlExperience per position_id, whatever the number of
deliveries. retrain() trains a new agent version on the paper market's candles.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction

from ai.sizing import agent as agent_mod
from qtweb.events import EventEnvelope, EventType
from qtweb.events.bus import publish
from qtweb.logging import get_logger

log = get_logger(__name__)

# Sizing inputs that change slowly are memoised per process for a few seconds (a bar's burst of
# 40 signals reads them once). They shape the size, they do not enforce a limit: the risk
# validator checks the live account for every intent.
ACCOUNT_MEMO_SECONDS = 2.0  # equity, drawdown, exposure
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


def account_equity_usd() -> Decimal:
    """Equity to size against: the paper account's total quote balance on the paper exchange,
    else RL_SIZING_EQUITY_USD (a real exchange's balance is read by the execution layer)."""
    if settings.MARKET_EXCHANGE == "paper":
        from trading.models import PaperBalance

        row = PaperBalance.objects.filter(account__name="default", currency="USDT").first()
        if row is not None:
            return (row.free + row.used).quantize(Decimal("0.01"))
    return Decimal(str(getattr(settings, "RL_SIZING_EQUITY_USD", 10000)))


def size_signal(signal: EventEnvelope | dict[str, Any], *, trace_id: str | None = None, equity_usd=None,
                allowed_size_usd=None, drawdown: float | None = None, exposure: float | None = None,
                max_position_usd=None, agent: agent_mod.TrainedAgent | None = None,
                use_latest_agent: bool = True) -> EventEnvelope:
    """Size one signal.generated and publish one rl.decision with the signal's trace id."""
    if isinstance(signal, EventEnvelope):
        trace_id = trace_id or signal.trace_id
        payload = signal.payload
    else:
        payload = signal
    symbol = payload["symbol"]
    action = str(payload["action"])
    p_up = (float(payload["score"]) + 1.0) / 2.0
    if drawdown is None or exposure is None or equity_usd is None:
        from risk.selectors import drawdown_and_exposure

        dd, ex, view_equity = _memoised(("account",), ACCOUNT_MEMO_SECONDS,
                                        drawdown_and_exposure)
        drawdown = dd if drawdown is None else drawdown
        exposure = ex if exposure is None else exposure
        if equity_usd is None and view_equity is not None:
            equity_usd = view_equity  # the execution account's equity, on any exchange
    equity = Decimal(str(equity_usd if equity_usd is not None else account_equity_usd()))
    if allowed_size_usd is None:
        allowed_size_usd = equity * Decimal(str(getattr(settings, "RL_SIZING_ALLOWED_FRACTION", "0.1")))
    if max_position_usd is None:
        from risk.services.policy import policy_get

        max_position_usd = policy_get().max_position_usd
    payoff, recent_pnl_usd = _memoised(("payoff",), STATS_MEMO_SECONDS, payoff_stats)
    recent_pnl = recent_pnl_usd / float(equity) if equity > 0 else 0.0
    timeframe = str(payload.get("timeframe", "5m"))
    volatility = _memoised(("volatility", symbol, timeframe), STATS_MEMO_SECONDS,
                           lambda: symbol_volatility(symbol, timeframe, exchange=settings.MARKET_EXCHANGE))
    if agent is None and use_latest_agent:
        agent = agent_mod.latest_agent()
    decision = agent_mod.decide(symbol, p_up, volatility, drawdown, exposure, recent_pnl, equity, allowed_size_usd,
                                payoff, action=action, agent=agent, max_position_usd=max_position_usd)
    envelope = publish(EventType.RL_DECISION, decision, trace_id=trace_id)
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

    p = event.payload
    if RlExperience.objects.filter(position_id=p["position_id"]).exists():
        return False
    features = cache.get(_entry_key(p["symbol"])) or {}
    try:
        with transaction.atomic():
            RlExperience.objects.create(
                symbol=p["symbol"], position_id=p["position_id"], side=p["side"], opened_at=p.get("opened_at"),
                closed_at=event.timestamp, pnl=Decimal(str(p["pnl_usd"])),
                fees=Decimal(str(p.get("fees_usd", "0"))),
                notional_usd=Decimal(str(p["amount"])) * Decimal(str(p["entry_price"])),
                features=features, trace_id=event.trace_id)
    except IntegrityError:  # a concurrent delivery stored it first
        return False
    return True


def retrain(*, timesteps: int | None = None, seed: int = 0, bars: int = 2000, timeframe: str = "5m") -> dict:
    """Train a new PPO version on the paper market's stored candles and save it (the newest
    loadable version serves). Publishes learning.event retrain_completed (or _failed)."""
    from ai.features.dataset import bars_from_db
    from ai.inference import historical_probabilities
    from ai.sizing.env import SizingEnv

    timesteps = int(timesteps or getattr(settings, "RL_SIZING_TIMESTEPS", 20_000))
    try:
        series = {s: b for s, b in bars_from_db("paper", timeframe, None, bars).items() if len(b)}
        try:
            # The state's probability is what the serving ensemble said at each bar.
            probs = historical_probabilities(series)
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
