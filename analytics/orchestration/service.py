"""The orchestrator's pass: load the state, let every layer propose, let HFOS decide, record, publish.

One pass (`run`), on the ops queue:
1. the state (analytics/orchestration/state.py); unknown or stale state decides nothing, and the
   pass records why;
2. position intelligence classifies every open position (PositionAssessment rows);
3. the layers propose directives: self-healing (the REDUCE_ONLY it set), the risk side (the mode,
   the governor's entry block), HFOS's own rules, the portfolio balancer (on its interval and
   after each position.opened) and profit amplification;
4. the directives are checked (no unknown symbol, no reduction bigger than a position) and
   resolved by `hfos_priority_hierarchy`;
5. in one transaction: the decision with every directive, accepted or overruled (with what beat
   it and why), and the events that carry the accepted ones out: `portfolio.balance`
   REBALANCE_REQUIRED for the balancer's reductions, `profit.amplification` for each add.
   Execution turns both into intents through the risk path; the decision's trace id is on both
   events, hence on the intents and orders they cause.

Passes are serialized across ops processes by a Redis lock: two passes reading the same pending
reductions would both reduce.

Position intelligence does not tighten stops: an at-risk position keeps the stops the position
monitor set (ATR-based, trailing). Its class gates amplification (winners only) and is shown to
operators; tightening stops on it is a separate decision nobody has measured yet.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from analytics.orchestration import amplifier, balancer, hfos, intelligence
from analytics.orchestration.config import OrchestrationConfig, orchestration_config
from analytics.orchestration.state import HEALING_ACTOR, OpenPosition, State, load
from core.decimals import ZERO
from core.enums import Mode
from qtweb.logging import get_logger
from qtweb.tracing import new_trace_id

log = get_logger(__name__)

_LOCK_KEY = "analytics:orchestration:lock"
_LOCK_SECONDS = 120
SOURCE = "analytics-os-service"
REBALANCE_REQUIRED = "REBALANCE_REQUIRED"


def config() -> OrchestrationConfig:
    return orchestration_config({k: getattr(settings, k) for k in dir(settings) if k.isupper()})


@dataclass
class Proposal:
    directives: list[hfos.Directive]
    balance: balancer.BalanceDecision | None
    assessments: dict[int, intelligence.Assessment]
    position_of: dict[str, int]
    standing: set[hfos.Directive] = field(default_factory=set)  # weighed, not carried out again


# --- what each layer proposes (pure over the loaded state) ---
def risk_directives(state: State, trace_id: str) -> list[hfos.Directive]:
    """The mode as directives: self-healing's REDUCE_ONLY is self-healing's; any other restrictive
    mode, or the governor's entry block, is the risk side's."""
    out = []
    if state.mode in (Mode.REDUCE_ONLY, Mode.HALTED):
        layer = hfos.SELF_HEALING if state.mode_set_by == HEALING_ACTOR else hfos.RISK
        kind = "halt" if state.mode == Mode.HALTED else "reduce_only"
        out.append(hfos.Directive(layer, kind, hfos.EVERYTHING, f"system mode {state.mode.value} "
                                                                 f"(set by {state.mode_set_by or 'unknown'})",
                                  trace_id=trace_id))
    if state.entries_blocked_until is not None and state.entries_blocked_until > state.now:
        out.append(hfos.Directive(hfos.RISK, "block_new_risk", hfos.EVERYTHING,
                                  f"governor blocks entries until {state.entries_blocked_until:%Y-%m-%d %H:%M} UTC",
                                  trace_id=trace_id))
    return out


def assess(state: State, atr_now: dict[int, Decimal | None], atr_at_entry: dict[int, Decimal | None],
           bar_seconds: float, horizon_bars: int) -> dict[int, intelligence.Assessment]:
    out = {}
    for p in state.positions:
        facts = intelligence.PositionFacts(
            side=p.side, entry_price=p.entry_price, mark_price=p.mark_price,
            bars_open=int(max(0.0, (state.now - p.opened_at).total_seconds()) // bar_seconds),
            horizon_bars=horizon_bars, signal_side=state.signals.get(p.symbol), atr_now=atr_now.get(p.id),
            atr_at_entry=atr_at_entry.get(p.id), liquidation_price=p.liquidation_price)
        out[p.id] = intelligence.classify(facts)
    return out


def _room(state: State, p: OpenPosition, cfg: OrchestrationConfig, policy, added: dict[str, Decimal]) -> Decimal:
    """What the position may still grow by under the risk policy's limits and (when it runs) the
    balancer's caps. Measured as the risk validator measures: the positions as they stand (a
    reduction counts once it has filled), the entries still being worked, and this pass's adds."""
    def now_of(q: OpenPosition) -> Decimal:
        return q.notional_usd + state.in_flight_entries_usd.get(q.symbol, ZERO) + added.get(q.symbol, ZERO)

    others = sum((v for k, v in state.in_flight_entries_usd.items() if state.position(k) is None), ZERO)
    gross = sum((now_of(q) for q in state.positions), ZERO) + others
    sector = sum((now_of(q) for q in state.positions if q.sector == p.sector), ZERO)
    eq = state.equity_usd
    rooms = [policy.max_position_usd - now_of(p), eq * policy.max_total_exposure_pct / 100 - gross,
             eq * policy.sector_cap_pct(p.sector) / 100 - sector]
    if cfg.pba_enabled:
        rooms += [eq * cfg.caps.max_sector_exposure_pct / 100 - sector,
                  eq * cfg.caps.max_total_exposure_pct / 100 - gross]
    return max(ZERO, min(rooms))


def _sector(p: OpenPosition) -> str:
    return p.sector or "other"


def propose(state: State, cfg: OrchestrationConfig, *, include_pba: bool, policy,
            assessments: dict[int, intelligence.Assessment], last_add_at: dict[int, datetime],
            trace_id: str) -> Proposal:
    """Every layer's directives over one state. The balancer runs in every pass (it is cheap and
    pure) so its reductions stand against adds in between its own passes too; only its own passes
    publish them (`include_pba`). Reductions already on their way stand as well. Directives that
    stand only to be weighed (`Proposal.standing`) are not carried out again."""
    directives = risk_directives(state, trace_id)
    directives += hfos.own_directives(critical_services=state.critical_services or (),
                                      drawdown_pct=state.drawdown_pct,
                                      max_drawdown_for_amplification_pct=cfg.max_drawdown_for_amplification_pct,
                                      trace_id=trace_id)
    if state.critical_services is None:
        directives.append(hfos.Directive(hfos.HFOS, "block_new_risk", hfos.EVERYTHING,
                                         "health graph unknown or stale: no new risk until the monitor builds one",
                                         trace_id=trace_id))
    standing: set[hfos.Directive] = set()
    decision = None
    # HALTED sends no order: a reduction would only be refused, again every pass.
    if cfg.pba_enabled and state.positions and state.mode != Mode.HALTED:
        holdings = [balancer.Holding(p.symbol, _sector(p), p.notional_usd) for p in state.positions]
        decision = balancer.balance(state.equity_usd, holdings, cfg.caps, state.pending_reductions_usd)
        for r in decision.reductions:
            reason = "; ".join(r.reasons) + ("" if include_pba else " (carried out by the balancer's next pass)")
            d = hfos.Directive(hfos.PBA, "reduce", r.symbol, reason, r.amount_usd, trace_id=trace_id)
            directives.append(d)
            if not include_pba:
                standing.add(d)
        fresh = set(decision.symbols_to_reduce)
        for symbol, amount in sorted(state.pending_reductions_usd.items()):
            pos = state.position(symbol)
            if pos is not None and amount > 0 and symbol not in fresh:
                d = hfos.Directive(hfos.PBA, "reduce", symbol, "a reduction already on its way",
                                   min(amount, pos.notional_usd).quantize(Decimal("0.01")), trace_id=trace_id)
                directives.append(d)
                standing.add(d)
    if cfg.pal_enabled:
        added: dict[str, Decimal] = {}
        for p in sorted(state.positions, key=lambda q: q.id):
            if p.exit_pending:  # an exit sized to the position as it was would leave the add behind
                continue
            a = assessments.get(p.id)
            pnl = p.pnl_pct
            # Without position intelligence every position in profit counts as a winner.
            label = a.label if a is not None else (intelligence.WINNER if pnl >= 0 else intelligence.LOSER)
            amp = amplifier.decide(label=label, pnl_pct=pnl, side=p.side, signal_side=state.signals.get(p.symbol),
                                   notional_usd=p.notional_usd, room_usd=_room(state, p, cfg, policy, added),
                                   last_add_at=last_add_at.get(p.id), now=state.now, config=cfg.amplifier)
            if amp.action == "add":
                added[p.symbol] = added.get(p.symbol, ZERO) + amp.add_size_usd
                directives.append(hfos.Directive(hfos.PAL, "add", p.symbol, amp.reason, amp.add_size_usd,
                                                 trace_id=trace_id))
    return Proposal(directives, decision, assessments, {p.symbol: p.id for p in state.positions}, standing)


# --- the pass ---
def run_exclusively(trigger: str, *, include_pba: bool, extra: list[hfos.Directive] | None = None,
                    wait_seconds: float = 0.0):
    """One pass at a time across every ops process. A pass that finds another running waits up to
    `wait_seconds` for it (the balancer's passes do: a position.opened pass skipped would leave
    that position's caps unchecked until the next beat), else it is skipped (None)."""
    import time

    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    while not cache.add(_LOCK_KEY, token, timeout=_LOCK_SECONDS):
        if time.monotonic() >= deadline:
            log.info("orchestration pass skipped: another one is running", trigger=trigger)
            return None
        time.sleep(0.25)
    try:
        return run(trigger, include_pba=include_pba, extra=extra)
    finally:
        if cache.get(_LOCK_KEY) == token:
            cache.delete(_LOCK_KEY)


def _atrs(state: State) -> tuple[dict[int, Decimal | None], dict[int, Decimal | None]]:
    from analytics.models import PositionAssessment
    from trading.positions.services import atr

    now = {p.id: (atr(p.symbol_id) or None) for p in state.positions}
    stored = dict(PositionAssessment.objects.filter(position_id__in=list(now), atr_at_entry__isnull=False)
                  .values_list("position_id", "atr_at_entry"))
    return now, {pid: stored.get(pid, v) for pid, v in now.items()}


def _store_assessments(state: State, assessments: dict[int, intelligence.Assessment],
                       atr_at_entry: dict[int, Decimal | None], trace_id: str) -> None:
    from analytics.models import PositionAssessment

    for p in state.positions:
        a = assessments[p.id]
        PositionAssessment.objects.update_or_create(position_id=p.id, defaults={
            "symbol": p.symbol, "label": a.label, "score": a.score, "pnl_pct": a.pnl_pct.quantize(Decimal("0.0001")),
            "reasons": list(a.reasons), "atr_at_entry": atr_at_entry.get(p.id), "open": True,
            "assessed_at": state.now, "trace_id": p.trace_id or trace_id})
    PositionAssessment.objects.filter(open=True).exclude(position_id__in=[p.id for p in state.positions]) \
        .update(open=False)


def _last_adds(state: State, window_seconds: float) -> dict[int, datetime]:
    """The last add carried out for each open position within the one-add window."""
    from datetime import timedelta

    from django.db.models import Max

    from analytics.models import DirectiveOutcome, HfosDirective

    rows = (HfosDirective.objects.filter(layer=hfos.PAL, kind="add", outcome=DirectiveOutcome.ACCEPTED,
                                         position_id__in=[p.id for p in state.positions], event_id__isnull=False,
                                         created_at__gte=state.now - timedelta(seconds=window_seconds))
            .values("position_id").annotate(at=Max("created_at")))
    return {r["position_id"]: r["at"] for r in rows}


def _portfolio_view(state: State, cfg: OrchestrationConfig, decision: balancer.BalanceDecision | None) -> dict:
    view = {"equity_usd": str(state.equity_usd),
            "drawdown_pct": None if state.drawdown_pct is None else str(round(state.drawdown_pct, 4)),
            "caps": {"max_sector_exposure_pct": str(cfg.caps.max_sector_exposure_pct),
                     "max_total_exposure_pct": str(cfg.caps.max_total_exposure_pct),
                     "max_positions": cfg.caps.max_positions},
            "pending_reductions_usd": {k: str(v) for k, v in state.pending_reductions_usd.items()}}
    if decision is not None:
        view.update({"exposures_usd": {k: str(v) for k, v in decision.exposures_usd.items()},
                     "sector_exposures_usd": {k: str(v) for k, v in decision.sector_exposures_usd.items()},
                     "gross_exposure_usd": str(decision.gross_exposure_usd), "breaches": list(decision.breaches)})
    return view


def run(trigger: str, *, include_pba: bool, extra: list[hfos.Directive] | None = None, now: datetime | None = None):
    """One pass; the HfosDecision recorded (None when nothing needed recording)."""
    from ai.features.labels import DEFAULT_HORIZON_BARS
    from analytics.models import HfosDecision
    from risk.services.policy import policy_get
    from trading.marketdata.timeframes import seconds

    cfg = config()
    now = now or timezone.now()
    trace_id = new_trace_id()
    state = load(now)
    if isinstance(state, str):
        log.warning("orchestration decided nothing", trigger=trigger, reason=state, trace_id=trace_id)
        if include_pba or extra:
            return HfosDecision.objects.create(trigger=trigger, hierarchy=list(cfg.hierarchy), skipped=state,
                                               created_at=now, trace_id=trace_id)
        return None
    assessments: dict[int, intelligence.Assessment] = {}
    atr_entry: dict[int, Decimal | None] = {}
    if cfg.pil_enabled and state.positions:
        atr_now, atr_entry = _atrs(state)
        assessments = assess(state, atr_now, atr_entry, float(seconds(settings.UNIVERSE_TIMEFRAME)),
                             DEFAULT_HORIZON_BARS)
    proposal = propose(state, cfg, include_pba=include_pba, policy=policy_get(), assessments=assessments,
                       last_add_at=_last_adds(state, cfg.amplifier.window_seconds), trace_id=trace_id)
    directives = proposal.directives + list(extra or [])
    try:
        hfos.check_directives(directives, {p.symbol: p.notional_usd for p in state.positions})
    except hfos.HfosError as exc:
        log.error("orchestration refused its directives", trigger=trigger, error=str(exc), trace_id=trace_id)
        with transaction.atomic():
            if assessments:
                _store_assessments(state, assessments, atr_entry, trace_id)
            return HfosDecision.objects.create(trigger=trigger, hierarchy=list(cfg.hierarchy),
                                               skipped=f"refused: {exc}"[:500], created_at=now, trace_id=trace_id,
                                               portfolio=_portfolio_view(state, cfg, proposal.balance))
    resolution = hfos.resolve(directives, cfg.hierarchy)
    acting = [d for d in resolution.accepted if d.layer in (hfos.PBA, hfos.PAL) and d not in proposal.standing]
    contested = [o for o in resolution.overruled if o.directive.layer in (hfos.PBA, hfos.PAL)]
    with transaction.atomic():
        if assessments:
            _store_assessments(state, assessments, atr_entry, trace_id)
        if not (include_pba or extra or acting or contested):
            return None
        return _record_and_publish(trigger, cfg, state, proposal, resolution, now, trace_id)


def _record_and_publish(trigger, cfg, state, proposal, resolution, now, trace_id):
    from analytics.models import DirectiveOutcome, HfosDecision, HfosDirective
    from qtweb.events import EventType
    from qtweb.events.bus import publish
    from qtweb.queues import Service, service_shadow

    shadow = service_shadow(Service.ANALYTICS)
    # A directive that stands only to be weighed (a reduction already on its way, or one the
    # balancer's next pass carries out) is recorded when it overruled something, not every pass.
    beat_something = {o.by for o in resolution.overruled}
    accepted = [d for d in resolution.accepted if d not in proposal.standing or d in beat_something]
    decision = HfosDecision.objects.create(
        trigger=trigger, hierarchy=list(cfg.hierarchy), accepted_count=len(accepted),
        overruled_count=len(resolution.overruled), portfolio=_portfolio_view(state, cfg, proposal.balance),
        shadow=shadow, created_at=now, trace_id=trace_id)
    rows: dict[hfos.Directive, HfosDirective] = {}

    def row(d: hfos.Directive, outcome: str, by: hfos.Directive | None = None, why: str = "") -> HfosDirective:
        return HfosDirective(decision=decision, layer=d.layer, kind=d.kind, symbol=d.symbol, amount_usd=d.amount_usd,
                             reason=d.reason[:500], outcome=outcome, overruled_by=by.describe()[:500] if by else "",
                             why=why[:500], position_id=proposal.position_of.get(d.symbol), created_at=now)

    for d in accepted:
        rows[d] = row(d, DirectiveOutcome.ACCEPTED)
    overruled = [row(o.directive, DirectiveOutcome.OVERRULED, o.by, o.why) for o in resolution.overruled]
    reductions = [d for d in accepted if d.layer == hfos.PBA and d.kind == "reduce" and d not in proposal.standing]
    if shadow:  # decided and recorded; nothing carried out (and so nothing pending or counted as an add)
        HfosDirective.objects.bulk_create([*rows.values(), *overruled])
        log.info("orchestration decided in shadow: nothing published", trigger=trigger, decision_id=decision.pk,
                 accepted=len(resolution.accepted), trace_id=trace_id)
        return decision
    if reductions:
        b = proposal.balance
        event = publish(EventType.PORTFOLIO_BALANCE, {
            "status": REBALANCE_REQUIRED, "decision_id": decision.pk, "equity_usd": state.equity_usd,
            "gross_exposure_usd": b.gross_exposure_usd if b else ZERO,
            "exposures_usd": {k: v for k, v in (b.exposures_usd if b else {}).items()},
            "sector_exposures_usd": dict(b.sector_exposures_usd) if b else {},
            "symbols_to_reduce": [d.symbol for d in reductions], "symbols_to_increase": [],
            "reductions_usd": {d.symbol: d.amount_usd for d in reductions},
            "directives": [f"reduce {d.symbol} {d.amount_usd}" for d in reductions],
            "reasons": {d.symbol: d.reason[:500] for d in reductions}}, source=SOURCE, trace_id=trace_id)
        for d in reductions:
            rows[d].event_id = event.event_id
    for d in accepted:
        if d.layer == hfos.PAL and d.kind == "add":
            event = publish(EventType.PROFIT_AMPLIFICATION, {
                "position_id": str(proposal.position_of[d.symbol]), "symbol": d.symbol, "action": "add",
                "add_size_usd": d.amount_usd, "reason": d.reason[:500], "decision_id": decision.pk},
                source=SOURCE, trace_id=trace_id)
            rows[d].event_id = event.event_id
    HfosDirective.objects.bulk_create([*rows.values(), *overruled])
    log.info("orchestration decided", trigger=trigger, decision_id=decision.pk, accepted=len(resolution.accepted),
             overruled=len(resolution.overruled), reductions=len(reductions), trace_id=trace_id)
    return decision


def decision_as_dict(decision) -> dict:
    return {"id": decision.pk, "trigger": decision.trigger, "created_at": decision.created_at.isoformat(),
            "trace_id": decision.trace_id, "hierarchy": decision.hierarchy, "skipped": decision.skipped,
            "portfolio": decision.portfolio,
            "directives": [{"layer": d.layer, "kind": d.kind, "symbol": d.symbol, "amount_usd": str(d.amount_usd),
                            "reason": d.reason, "outcome": d.outcome, "overruled_by": d.overruled_by, "why": d.why,
                            "position_id": d.position_id, "event_id": str(d.event_id) if d.event_id else None}
                           for d in decision.directives.all()]}


def portfolio_state(now: datetime | None = None) -> dict:
    """The positions, the exposures per symbol and sector, the caps and the last decision (RPC
    `get_portfolio_state`). When the account state is unknown, `state_unknown` says why and the
    exposures are left out rather than guessed."""
    from analytics.models import HfosDecision, PositionAssessment

    cfg = config()
    now = now or timezone.now()
    state = load(now)
    last = HfosDecision.objects.order_by("-created_at", "-pk").first()
    out: dict = {"caps": {"max_sector_exposure_pct": str(cfg.caps.max_sector_exposure_pct),
                          "max_total_exposure_pct": str(cfg.caps.max_total_exposure_pct),
                          "max_positions": cfg.caps.max_positions},
                 "enabled": {"pba": cfg.pba_enabled, "pal": cfg.pal_enabled, "pil": cfg.pil_enabled},
                 "hierarchy": list(cfg.hierarchy), "as_of": now.isoformat(),
                 "last_decision": decision_as_dict(last) if last else None}
    if isinstance(state, str):
        return {**out, "state_unknown": state, "positions": []}
    labels = {a.position_id: a for a in PositionAssessment.objects.filter(position_id__in=[p.id for p in
                                                                                         state.positions])}
    sectors: dict[str, Decimal] = {}
    for p in state.positions:
        sectors[p.sector] = sectors.get(p.sector, ZERO) + p.notional_usd
    gross = sum((p.notional_usd for p in state.positions), ZERO)
    eq = state.equity_usd
    out.update({
        "equity_usd": str(eq), "gross_exposure_usd": str(gross.quantize(Decimal("0.01"))),
        "gross_exposure_pct": str((gross / eq * 100).quantize(Decimal("0.01"))),
        "positions": [{"id": p.id, "symbol": p.symbol, "sector": p.sector, "side": p.side, "amount": str(p.amount),
                       "notional_usd": str(p.notional_usd.quantize(Decimal("0.01"))),
                       "exposure_pct": str((p.notional_usd / eq * 100).quantize(Decimal("0.01"))),
                       "intelligence": ({"label": labels[p.id].label, "score": labels[p.id].score,
                                         "reasons": labels[p.id].reasons} if p.id in labels else None)}
                      for p in state.positions],
        "exposures_usd": {p.symbol: str(p.notional_usd.quantize(Decimal("0.01"))) for p in state.positions},
        "sector_exposures_usd": {k: str(v.quantize(Decimal("0.01"))) for k, v in sorted(sectors.items())},
        "sector_exposures_pct": {k: str((v / eq * 100).quantize(Decimal("0.01"))) for k, v in sorted(sectors.items())},
        "pending_reductions_usd": {k: str(v) for k, v in state.pending_reductions_usd.items()},
    })
    return out
