"""System modes: NORMAL, SHADOW, REDUCE_ONLY, HALTED, with an audit row per change and a
`system.mode_changed` event in the same transaction.

The current mode is the newest ModeChange (NORMAL when there is none), mirrored in the cache so
the execution path reads it with one GET. Changes are serialised by a row lock on the governor
state, so two concurrent changes cannot both pass the transition check.
"""
from __future__ import annotations

from django.core.cache import cache
from django.db import transaction

from qtweb.events import EventType
from qtweb.events.bus import publish
from qtweb.logging import get_logger
from qtweb.tracing import current_trace_id
from risk.domain.modes import Mode, check_transition
from risk.models import GovernorState, ModeChange

log = get_logger(__name__)

MODE_CACHE_KEY = "risk:mode"
MODE_CACHE_SECONDS = 24 * 3600  # refreshed on every change; a miss reads the audit table


def mode_get() -> Mode:
    value = cache.get(MODE_CACHE_KEY)
    if value is None:
        row = ModeChange.objects.order_by("-created_at", "-pk").values_list("mode", flat=True).first()
        value = row or Mode.NORMAL.value
        cache.set(MODE_CACHE_KEY, value, MODE_CACHE_SECONDS)
    return Mode(value)


def governor_state_locked() -> GovernorState:
    """The governor's single row, locked for the rest of the transaction."""
    GovernorState.objects.get_or_create(pk=1)
    return GovernorState.objects.select_for_update().get(pk=1)


def mode_set(*, target: Mode | str, reason: str, changed_by: str, by_operator: bool) -> ModeChange:
    """Change the system mode. Raises ModeTransitionError (naming current, target and the allowed
    targets) for a transition the rules forbid (risk/domain/modes.py)."""
    with transaction.atomic():
        governor_state_locked()  # serialises mode changes
        current_value = ModeChange.objects.order_by("-created_at", "-pk").values_list("mode", flat=True).first()
        current = Mode(current_value or Mode.NORMAL.value)
        new = check_transition(current, target, by_operator=by_operator, reason=reason)
        row = ModeChange.objects.create(previous_mode=current.value, mode=new.value, reason=reason.strip()[:2000],
                                        changed_by=str(changed_by)[:150], by_operator=by_operator,
                                        trace_id=current_trace_id() or "")
        publish(EventType.SYSTEM_MODE_CHANGED, {"previous_mode": current.value, "mode": new.value,
                                                "reason": reason.strip()[:2000], "changed_by": str(changed_by)[:128]})
        if new in (Mode.HALTED, Mode.REDUCE_ONLY):
            cache.set(MODE_CACHE_KEY, new.value, MODE_CACHE_SECONDS)  # fail safe: block new orders at once
        else:
            cache.delete(MODE_CACHE_KEY)  # readers go to the audit table until the commit sets it
        transaction.on_commit(lambda: cache.set(MODE_CACHE_KEY, new.value, MODE_CACHE_SECONDS))
    log.warning("system mode changed", previous_mode=current.value, mode=new.value, changed_by=changed_by,
                by_operator=by_operator, reason=reason)
    return row
