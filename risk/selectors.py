"""Reads of the risk layer: its own state (the day's starting equity, the governor, mode
changes) and, through trading's selectors, the account as the validator and the governor see it."""
from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from core.enums import Mode
from risk.models import DailyEquity, GovernorState
from trading.models import Position, PositionStatus


def day_start_equity_get(day=None) -> Decimal | None:
    day = day or timezone.now().date()
    return DailyEquity.objects.filter(day=day).values_list("start_equity_usd", flat=True).first()


def entries_blocked_until():
    return GovernorState.objects.filter(pk=1).values_list("entries_blocked_until", flat=True).first()


def last_mode_change():
    """The newest ModeChange row (who set the current mode, from what), or None."""
    from risk.models import ModeChange

    return ModeChange.objects.order_by("-created_at", "-pk").first()


def last_operator_resume(*, from_halted_only: bool = False):
    """When an operator last relaxed the mode (HALTED -> REDUCE_ONLY, or REDUCE_ONLY -> NORMAL /
    SHADOW; with from_halted_only, only the first kind); None if never."""
    from django.db.models import Q

    from risk.models import ModeChange

    relaxed = Q(previous_mode=Mode.HALTED, mode=Mode.REDUCE_ONLY)
    if not from_halted_only:
        relaxed |= Q(previous_mode=Mode.REDUCE_ONLY, mode__in=(Mode.NORMAL, Mode.SHADOW))
    return (ModeChange.objects.filter(relaxed, by_operator=True).order_by("-created_at")
            .values_list("created_at", flat=True).first())


def consecutive_losses(exchange: str, limit: int = 50) -> int:
    """Closed positions with a loss, counted back from the newest until a non-loss — only those
    closed since an operator last resumed (the streak that caused the stop is acknowledged)."""
    from risk.domain.governor import consecutive_losses as count

    qs = Position.objects.filter(exchange=exchange, status=PositionStatus.CLOSED)
    since = last_operator_resume()
    if since is not None:
        qs = qs.filter(closed_at__gt=since)
    pnls = qs.order_by("-closed_at", "-pk").values_list("realized_pnl_usd", flat=True)[:limit]
    return count(pnls)


def risk_decision_list():
    """Every verdict of the risk validator, newest first."""
    from risk.models import RiskDecision

    return RiskDecision.objects.order_by("-created_at", "-pk")


def policy_version_list():
    """Every policy version, newest first."""
    from risk.models import RiskPolicy

    return RiskPolicy.objects.order_by("-version")
