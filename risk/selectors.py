"""Reads of the risk layer: the account as the validator and the governor see it."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from risk.models import DailyEquity, GovernorState
from trading import selectors as trading_sel
from trading.models import Order, Position, PositionStatus

ZERO = Decimal("0")


@dataclass
class AccountView:
    exchange: str
    equity_usd: Decimal
    positions: list[Position]
    open_orders: list[Order]
    balance: dict


def account_view(gateway=None) -> AccountView:
    from trading.execution.gateway import exchange_id, execution_gateway

    gateway = gateway or execution_gateway()
    exchange = exchange_id()
    positions = trading_sel.open_positions_list(exchange)
    balance = gateway.fetch_balance()
    equity = trading_sel.equity_usd(balance, positions, includes_unrealized_pnl=gateway.balance_includes_unrealized_pnl)
    return AccountView(exchange=exchange, equity_usd=equity,
                       positions=positions, open_orders=trading_sel.open_orders_list(exchange), balance=balance)


def day_start_equity_get(day=None) -> Decimal | None:
    day = day or timezone.now().date()
    return DailyEquity.objects.filter(day=day).values_list("start_equity_usd", flat=True).first()


def entries_blocked_until():
    return GovernorState.objects.filter(pk=1).values_list("entries_blocked_until", flat=True).first()


def last_operator_resume(*, from_halted_only: bool = False):
    """When an operator last relaxed the mode (HALTED -> REDUCE_ONLY, or REDUCE_ONLY -> NORMAL /
    SHADOW; with from_halted_only, only the first kind); None if never."""
    from django.db.models import Q

    from risk.models import ModeChange

    relaxed = Q(previous_mode="HALTED", mode="REDUCE_ONLY")
    if not from_halted_only:
        relaxed |= Q(previous_mode="REDUCE_ONLY", mode__in=("NORMAL", "SHADOW"))
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


def drawdown_and_exposure() -> tuple[float, float, Decimal | None]:
    """(drawdown from the UTC day's starting equity, gross exposure / equity) as fractions, and
    the equity, for RL sizing. (0, 0, None) when the account cannot be read."""
    try:
        view = account_view()
    except Exception:
        return 0.0, 0.0, None
    if view.equity_usd <= 0:
        return 0.0, 0.0, None
    start = day_start_equity_get() or view.equity_usd
    drawdown = max(ZERO, (start - view.equity_usd) / start) if start > 0 else ZERO
    gross = sum((p.notional_usd for p in view.positions), ZERO)
    return float(drawdown), float(gross / view.equity_usd), view.equity_usd


# --- the API's lists (risk/api.py filters them with risk/filters.py) --------------------------
# These return QuerySets (the API filters and paginates them further).


def risk_decision_list():
    """Every verdict of the risk validator, newest first."""
    from risk.models import RiskDecision

    return RiskDecision.objects.order_by("-created_at", "-pk")


def policy_version_list():
    """Every policy version, newest first."""
    from risk.models import RiskPolicy

    return RiskPolicy.objects.order_by("-version")
