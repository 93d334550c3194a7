"""The meta-strategy as a service: choose a profile per symbol for inference, carry it to
execution through `rl.decision`, and learn from `position.closed`.

- `choose_profiles(bars, sectors)`: the context of each symbol (the regime of the closes inference
  already loaded, the symbol's sector as its group) and the stored agent's choice. Inference
  votes each symbol at its profile's ensemble threshold and publishes no signal where the
  profile stands aside (`MetaChoices.apply`), then records the decisions under the pass's trace
  id (`MetaChoices.record`). A pass records the decisions that made or changed a trade: a BUY or
  SELL, or a vote the default threshold would have acted on.
- `profile_fields(trace_id, symbol)`: what `rl.decision` carries of that decision (profile,
  fallback flag, execution strategy, horizon); nothing where inference recorded none.
- `link_position(event)` (position.opened) ties the decision to the position it opened, so the
  reward finds it even when the position is closed under another trace (a reversal signal).
- `learn_from_closed(event)` (position.closed): reward = net realized PnL / entry notional; the
  agent's state is updated under a row lock and the decision's reward filled, once per decision.

With RL_META_STRATEGY_ENABLED off, inference does not call into here and records no decision,
so sizing finds none (one indexed lookup) and everything runs as without the agent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ai.meta.bandit import Choice, Context, ContextualBandit, regime_of
from ai.meta.profiles import DEFAULT_PROFILE
from qtweb.events import EventEnvelope
from qtweb.logging import get_logger

log = get_logger(__name__)

STATE_PK = 1


def enabled() -> bool:
    return bool(getattr(settings, "RL_META_STRATEGY_ENABLED", False))


def load_bandit() -> ContextualBandit:
    """The stored agent; a fresh (untrained: it falls back everywhere) one when none is stored."""
    from ai.models import MetaStrategyState

    state = MetaStrategyState.objects.filter(pk=STATE_PK).first()
    return ContextualBandit() if state is None else ContextualBandit.from_dict(state.bandit)


def save_bandit(bandit: ContextualBandit) -> None:
    """Store `bandit` as the agent (e.g. after offline training)."""
    from ai.models import MetaStrategyState

    if not isinstance(bandit, ContextualBandit):
        raise ValueError(f"bandit must be a ContextualBandit, got {type(bandit).__name__}")
    state = bandit.to_dict()
    ContextualBandit.from_dict(state)  # refuse to store what could not be loaded back
    MetaStrategyState.objects.update_or_create(pk=STATE_PK, defaults={
        "bandit": state, "rewards_applied": bandit.total_rewards, "updated_at": timezone.now()})


@dataclass(frozen=True)
class SymbolChoice:
    context: Context
    choice: Choice


@dataclass
class MetaChoices:
    by_symbol: dict[str, SymbolChoice] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def thresholds(self) -> dict[str, float]:
        return {sym: c.choice.profile.ensemble_threshold for sym, c in self.by_symbol.items()}

    def apply(self, result) -> None:
        """Where the profile stands aside, the symbol's vote is dropped with the reason: no signal."""
        for sym, sig in result.signals.items():
            c = self.by_symbol.get(sym)
            if c is None or c.choice.profile.trade or sig.vote is None:
                continue
            sig.stood_aside_from, sig.vote = sig.vote, None
            sig.reason = f"meta-strategy profile {c.choice.profile.name}: no new entries ({c.choice.reason})"
            log.info("meta-strategy stands aside", symbol=sym, regime=c.context.regime, group=c.context.group,
                     reason=c.choice.reason)

    def record(self, result, timeframe: str, trace_id: str) -> int:
        """One MetaStrategyDecision per symbol whose profile made or changed a trade (call inside
        the transaction that publishes the signals)."""
        from ai.models import MetaStrategyDecision

        now = timezone.now()
        rows = []
        for sym, sig in result.signals.items():
            c = self.by_symbol.get(sym)
            v = sig.vote if sig.vote is not None else sig.stood_aside_from
            if c is None or v is None:
                continue
            p = c.choice.profile
            if v.confidence < min(p.ensemble_threshold, DEFAULT_PROFILE.ensemble_threshold):
                continue  # a HOLD under either threshold: the profile changed nothing
            rows.append(MetaStrategyDecision(
                created_at=now, symbol=sym, timeframe=str(timeframe), regime=c.context.regime, group=c.context.group,
                profile=p.name, fallback=c.choice.fallback, reason=c.choice.reason[:500],
                ensemble_threshold=p.ensemble_threshold, horizon_bars=p.horizon_bars,
                execution_strategy=str(p.execution_strategy), trade=p.trade, trace_id=trace_id))
        MetaStrategyDecision.objects.bulk_create(rows, ignore_conflicts=True)
        return len(rows)


def choose_profiles(bars_by_symbol: dict[str, np.ndarray], sectors: dict[str, str] | None) -> MetaChoices:
    """The stored agent's profile for each symbol, in the context of its closes and sector. An
    agent state that cannot be read gives the default profile, flagged: signals go on."""
    try:
        bandit, broken = load_bandit(), None
    except ValueError as exc:
        bandit, broken = None, Choice(DEFAULT_PROFILE, True, f"agent state unreadable: {exc}"[:500])
        log.error("meta-strategy state unreadable: the default profile serves", error=str(exc))
    out = MetaChoices()
    for sym, bars in bars_by_symbol.items():
        arr = np.asarray(bars, dtype=float)
        if arr.ndim != 2 or arr.shape[1] < 5:
            out.skipped[sym] = "no bars"
            continue
        try:
            ctx = Context(regime_of(arr[:, 4]), (sectors or {}).get(sym, ""))
        except ValueError as exc:  # too little history: inference skips the symbol too
            out.skipped[sym] = str(exc)
            continue
        out.by_symbol[sym] = SymbolChoice(ctx, broken or _choose(bandit, ctx))
    return out


def _choose(bandit, ctx: Context) -> Choice:
    """The cautious choice, except in a small share of decisions (RL_META_EXPLORATION_RATE) that try
    the profile the agent knows least: without them, a context where it learned to stand aside (or
    to keep the default) would never give another profile a reward to learn from."""
    import random

    from django.conf import settings

    if random.random() < settings.RL_META_EXPLORATION_RATE:
        c = bandit.choose(ctx, explore=True)
        return Choice(c.profile, False, f"exploring (RL_META_EXPLORATION_RATE): {c.reason}"[:500])
    return bandit.choose(ctx)


def profile_fields(trace_id: str | None, symbol: str) -> dict:
    """The `rl.decision` fields of the meta-strategy's decision for `symbol` in the inference
    pass `trace_id`; {} when it made none there. Not gated by the setting: a signal inference
    published under a profile is traded under it, even if the sizing worker reads the setting
    differently (a rolling restart after it was switched)."""
    if not trace_id:
        return {}
    from ai.models import MetaStrategyDecision

    d = MetaStrategyDecision.objects.filter(trace_id=trace_id, symbol=symbol).first()
    if d is None:
        return {}
    return {"profile": d.profile, "profile_fallback": d.fallback, "execution_strategy": d.execution_strategy,
            "horizon_bars": d.horizon_bars}


def link_position(event: EventEnvelope) -> bool:
    """position.opened: remember which position the decision opened. True when linked now."""
    from ai.models import MetaStrategyDecision

    p = event.data()
    return bool(MetaStrategyDecision.objects.filter(trace_id=event.trace_id, symbol=p.symbol, position_id="",
                                                    trade=True).update(position_id=p.position_id))


def learn_from_closed(event: EventEnvelope) -> float | None:
    """position.closed: reward the decision that opened the position and update the agent.
    The reward, or None when no decision is found or it was already rewarded."""
    from ai.models import MetaStrategyDecision, MetaStrategyState

    p = event.data()
    notional = p.amount * p.entry_price
    if notional <= 0:
        return None
    reward = p.pnl_usd / notional
    with transaction.atomic():
        qs = MetaStrategyDecision.objects.select_for_update()
        d = qs.filter(position_id=p.position_id).first()
        if d is None:  # not linked yet (position.opened not handled yet): by the trace it opened under
            by_trace = qs.filter(trace_id=event.trace_id, symbol=p.symbol, position_id="", trade=True)
            if p.opened_at is not None:  # never a later pass's decision (a reversal closes under its trace)
                by_trace = by_trace.filter(created_at__lte=p.opened_at)
            d = by_trace.first()
        if d is None or d.rewarded_at is not None:
            return None
        # The row exists before it is locked, so two first rewards cannot both start from nothing.
        MetaStrategyState.objects.get_or_create(pk=STATE_PK, defaults={
            "bandit": ContextualBandit().to_dict(), "updated_at": timezone.now()})
        state = MetaStrategyState.objects.select_for_update().get(pk=STATE_PK)
        bandit = ContextualBandit.from_dict(state.bandit)
        ctx = Context(d.regime, d.group)
        try:
            bandit.update(ctx, d.profile, float(reward))
        except ValueError as exc:  # a profile no longer on this agent's menu: recorded, not learned
            log.warning("meta-strategy reward not learned", symbol=p.symbol, profile=d.profile, error=str(exc))
            d.reason = f"{d.reason} | reward not learned: {exc}"[:500]
        else:
            state.bandit = bandit.to_dict()
            state.rewards_applied += 1
            state.updated_at = timezone.now()
            state.save(update_fields=["bandit", "rewards_applied", "updated_at"])
        d.position_id = p.position_id
        d.reward = float(reward)
        d.pnl_usd = p.pnl_usd
        d.notional_usd = notional.quantize(Decimal("0.0000000001"))
        d.rewarded_at = timezone.now()
        d.save(update_fields=["position_id", "reward", "pnl_usd", "notional_usd", "rewarded_at", "reason"])
    log.info("meta-strategy rewarded", symbol=p.symbol, profile=d.profile, regime=d.regime, group=d.group,
             reward=float(reward))
    return float(reward)


def state_summary() -> dict:
    """The agent for the API: whether it is on, what it learned per (context, profile), and what
    it would choose in each context it has seen."""
    from ai.models import MetaStrategyState

    state = MetaStrategyState.objects.filter(pk=STATE_PK).first()
    bandit = ContextualBandit() if state is None else ContextualBandit.from_dict(state.bandit)
    contexts = sorted({(r["regime"], r["group"]) for r in bandit.table()})
    choices = []
    for regime, group in contexts:
        c = bandit.choose(Context(regime, group))
        choices.append({"regime": regime, "group": group, "profile": c.profile.name, "fallback": c.fallback,
                        "reason": c.reason})
    return {"enabled": enabled(), "rewards_applied": state.rewards_applied if state else 0,
            "updated_at": state.updated_at if state else None, "default_profile": bandit.default.name,
            "min_pulls": bandit.min_pulls, "confidence": bandit.confidence,
            "profiles": [p.as_dict() for p in bandit.profiles], "arms": bandit.table(), "choices": choices}
