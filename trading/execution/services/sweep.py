"""The beat's fallback for intents: whatever inline processing lost (a worker killed between
the commit and the exchange call, a wake-up message lost with Redis) is picked up here."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from core.enums import IntentStatus
from qtweb.logging import get_logger
from risk.services.governor import flatten_request_pending
from trading.exchanges.account import exchange_id
from trading.execution.services.emergency import emergency_flatten_pending
from trading.execution.services.intents import intent_advance, intent_process
from trading.models import ExecutionIntent

log = get_logger(__name__)

PENDING_GRACE_SECONDS = 5  # a PENDING intent younger than this is still being processed inline
SWEEP_BATCH = 50


def _isolated(fn, arg) -> None:
    """One intent's failure must not stop the others (the next sweep tries it again)."""
    try:
        fn(arg)
    except Exception as exc:
        log.warning("sweep item failed; retried on the next sweep", item=arg, error=f"{type(exc).__name__}: {exc}")


def sweep() -> dict:
    """Beat fallback: process PENDING intents whose inline processing was lost, advance WORKING
    intents whose next action is due."""
    now = timezone.now()
    exchange = exchange_id()
    pending = list(ExecutionIntent.objects.filter(
        exchange=exchange, status=IntentStatus.PENDING, created_at__lte=now - timedelta(seconds=PENDING_GRACE_SECONDS),
    ).values_list("pk", flat=True)[:SWEEP_BATCH])
    due = list(ExecutionIntent.objects.filter(exchange=exchange, status=IntentStatus.WORKING,
                                              next_action_at__lte=now).values_list("pk", flat=True)[:SWEEP_BATCH])
    for pk in pending:
        _isolated(intent_process, pk)
    for pk in due:
        _isolated(intent_advance, pk)
    if flatten_request_pending() is not None:
        _isolated(lambda _: emergency_flatten_pending(), None)
    return {"pending": len(pending), "advanced": len(due)}
