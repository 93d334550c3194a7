"""The safety governor and the emergency stop.

governor_check() runs after every closed position, on the position monitor's beat and on
demand: consecutive losses at the limit -> REDUCE_ONLY; daily drawdown at its limit -> no new
entries until the next UTC day; drawdown at the emergency level -> emergency stop.

emergency_stop() puts the system in HALTED (new orders are refused from that moment: the
executor reads the mode before every order) and publishes `emergency.stop`; the execution
worker's consumer then cancels every open order and, as the policy says, flattens every
position (trading/execution/services/emergency.py), reporting back through flatten_report()
until nothing is left. Only an operator resumes, through
REDUCE_ONLY, with a reason on record (risk/services/modes.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from qtweb.events import EventType
from qtweb.events.bus import publish
from qtweb.logging import get_logger
from risk import selectors
from risk.domain import governor as gov
from risk.domain.modes import Mode
from risk.services.modes import governor_state_locked, mode_get, mode_set
from risk.services.policy import policy_get
from risk.services.validation import day_start_equity
from trading import selectors as trading_sel

log = get_logger(__name__)

GOVERNOR = "safety-governor"


@dataclass(frozen=True)
class FlattenRequest:
    """An emergency stop whose cancel/flatten has not been reported done."""

    event_id: str
    flatten_positions: bool


def flatten_request_pending() -> FlattenRequest | None:
    """The emergency stop execution still has to finish (None when there is none)."""
    from risk.models import GovernorState

    row = GovernorState.objects.filter(pk=1, flatten_pending=True).values(
        "flatten_event_id", "flatten_positions").first()
    if row is None:
        return None
    return FlattenRequest(event_id=row["flatten_event_id"], flatten_positions=row["flatten_positions"])


def flatten_report(*, done: bool) -> None:
    """Execution's report on the emergency flatten: done clears the request; not done keeps it,
    and the beat sweep runs the flatten again."""
    from risk.models import GovernorState

    GovernorState.objects.filter(pk=1).update(flatten_pending=not done)


def emergency_stop(*, reason: str, triggered_by: str, by_operator: bool, flatten: bool | None = None,
                   drawdown_pct: Decimal | None = None, consecutive_losses: int | None = None) -> bool:
    """HALT now and publish emergency.stop (the execution worker cancels and flattens; the beat
    sweep repeats that until nothing is left). Returns False if the system was already HALTED
    (the mode is unchanged, the cancel/flatten runs again)."""
    reason = (reason or "").strip()
    if len(reason) < 3:
        from risk.domain.modes import ModeTransitionError

        raise ModeTransitionError("an emergency stop needs a reason (at least 3 characters)")
    policy = policy_get()
    flatten = policy.flatten_on_emergency if flatten is None else bool(flatten)
    with transaction.atomic():
        state = governor_state_locked()
        already = mode_get() == Mode.HALTED
        if not already:
            mode_set(target=Mode.HALTED, reason=f"emergency stop: {reason}", changed_by=triggered_by,
                     by_operator=by_operator)
        state.last_emergency_at = timezone.now()
        state.last_emergency_reason = reason[:2000]
        # Even when HALTED already (set through the mode API, or a stop that did not finish),
        # the cancel/flatten runs: it is idempotent, and a halt without it leaves orders working.
        envelope = publish(EventType.EMERGENCY_STOP, {
            "reason": reason[:2000], "triggered_by": str(triggered_by)[:128],
            "drawdown_pct": float(drawdown_pct) if drawdown_pct is not None else None,
            "consecutive_losses": consecutive_losses, "flatten_positions": flatten,
        })
        state.flatten_pending = True
        state.flatten_event_id = str(envelope.event_id)
        state.flatten_positions = flatten
        state.save(update_fields=["last_emergency_at", "last_emergency_reason", "flatten_pending",
                                  "flatten_event_id", "flatten_positions", "updated_at"])
    if already:
        log.critical("EMERGENCY STOP while HALTED: cancel and flatten run again", reason=reason,
                     triggered_by=triggered_by)
        return False
    log.critical("EMERGENCY STOP", reason=reason, triggered_by=triggered_by, flatten=flatten)
    return True


def governor_check(*, trigger: str = "periodic", view: trading_sel.AccountView | None = None) -> gov.GovernorAction:
    """Assess the account and act on what the pure governor says."""
    policy = policy_get()
    view = view or trading_sel.account_view()
    now = timezone.now()
    inp = gov.GovernorInput(
        policy=policy, mode=mode_get(), equity_usd=view.equity_usd,
        day_start_equity_usd=day_start_equity(view.equity_usd, now),
        consecutive_losses=selectors.consecutive_losses(view.exchange),
        entries_blocked_until=selectors.entries_blocked_until(), now=now)
    action = gov.assess(inp)
    if action.kind == "emergency_stop":
        resumed = selectors.last_operator_resume(from_halted_only=True)
        if resumed is not None and resumed.date() == now.date():
            # An operator resumed from today's emergency stop: they own that decision. The stop
            # is not repeated today; new entries stay blocked until the next UTC day.
            action = gov.GovernorAction(
                kind="block_entries" if inp.entries_blocked_until is None or inp.entries_blocked_until <= now
                else "none",
                reason=f"{action.reason}; an operator resumed from today's emergency stop at {resumed:%H:%M} UTC, "
                       "so entries are blocked until the next UTC day instead",
                drawdown_pct=action.drawdown_pct, block_until=gov.next_utc_midnight(now))
    if action.kind == "emergency_stop":
        emergency_stop(reason=action.reason, triggered_by=GOVERNOR, by_operator=False,
                       drawdown_pct=action.drawdown_pct, consecutive_losses=inp.consecutive_losses)
    elif action.kind == "reduce_only":
        mode_set(target=Mode.REDUCE_ONLY, reason=action.reason, changed_by=GOVERNOR, by_operator=False)
        publish(EventType.RISK_ALERT, {"severity": "critical", "rule": "consecutive_losses",
                                       "message": action.reason[:2000], "rejected": False,
                                       "policy_version": policy.version})
    elif action.kind == "block_entries":
        with transaction.atomic():
            state = governor_state_locked()
            state.entries_blocked_until = action.block_until
            state.block_reason = action.reason[:2000]
            state.save(update_fields=["entries_blocked_until", "block_reason", "updated_at"])
            publish(EventType.RISK_ALERT, {"severity": "critical", "rule": "daily_drawdown",
                                           "message": action.reason[:2000], "rejected": False,
                                           "policy_version": policy.version})
    if action.kind != "none":
        log.warning("safety governor acted", action=action.kind, reason=action.reason, trigger=trigger)
    return action
