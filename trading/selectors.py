"""Reads of the trading ledger: the execution account, open positions and orders, intents in
flight, exposure, equity. Risk reads the account only through these."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from core.decimals import ZERO, to_decimal
from core.enums import IntentStatus, Side
from trading.models import OPEN_ORDER_STATUSES, ExecutionIntent, MarketType, Order, Position, PositionStatus


def open_positions_list(exchange: str) -> list[Position]:
    return list(Position.objects.filter(exchange=exchange, status=PositionStatus.OPEN).select_related("symbol")
                .order_by("symbol__symbol"))


def open_orders_list(exchange: str, symbol_id: int | None = None) -> list[Order]:
    qs = Order.objects.filter(exchange=exchange, status__in=OPEN_ORDER_STATUSES).select_related("symbol")
    if symbol_id is not None:
        qs = qs.filter(symbol_id=symbol_id)
    return list(qs.order_by("created_at", "pk"))


def orders_last_minute_count(exchange: str, now=None) -> int:
    now = now or timezone.now()
    return Order.objects.filter(exchange=exchange, created_at__gte=now - timedelta(seconds=60)).count()


def quote_total(balance: dict, quote: str = "USDT") -> Decimal:
    total = (balance.get("total") or {}).get(quote)
    return to_decimal(total, f"balance total {quote}") if total is not None else ZERO


def equity_usd(balance: dict, positions: Iterable[Position], quote: str = "USDT", *,
               includes_unrealized_pnl: bool = False) -> Decimal:
    """Quote balance (free + used, margin included) + unrealized PnL of perpetual positions
    (unless the exchange's total is a margin balance that already holds it) + the value of spot
    holdings at their mark."""
    equity = quote_total(balance, quote)
    for p in positions:
        mark = p.mark_price or p.entry_price
        if p.symbol.market_type == MarketType.SPOT:
            equity += p.amount * mark
        elif not includes_unrealized_pnl:
            equity += p.unrealized_pnl_usd
    return equity.quantize(Decimal("0.01"))


@dataclass
class AccountView:
    """The execution account now: equity, open positions and orders, the exchange's balance."""

    exchange: str
    equity_usd: Decimal
    positions: list[Position]
    open_orders: list[Order]
    balance: dict


def execution_exchange() -> str:
    """The id of the exchange this deployment trades on (the account's exchange)."""
    from trading.exchanges.account import exchange_id

    return exchange_id()


def account_view(gateway=None, *, balance: dict | None = None) -> AccountView:
    """Read the execution account (one balance call to the exchange unless `balance`, just
    fetched, is given; the rest from our rows)."""
    from trading.exchanges.account import exchange_id, execution_gateway

    gateway = gateway or execution_gateway()
    exchange = exchange_id()
    positions = open_positions_list(exchange)
    balance = gateway.fetch_balance() if balance is None else balance
    equity = equity_usd(balance, positions, includes_unrealized_pnl=gateway.balance_includes_unrealized_pnl)
    return AccountView(exchange=exchange, equity_usd=equity, positions=positions,
                       open_orders=open_orders_list(exchange), balance=balance)


@dataclass(frozen=True)
class InFlightEntry:
    """An entry intent still working: what it asked and what its plan has not sent yet."""

    symbol: str
    sector: str
    side: Side
    size_usd: Decimal
    unsent_amount: Decimal


def in_flight_entries(exchange: str, *, exclude_key: str = "") -> list[InFlightEntry]:
    """Working entry intents (not `exclude_key`) with the base amount of their unsent slices."""
    out = []
    qs = (ExecutionIntent.objects.filter(exchange=exchange, status=IntentStatus.WORKING, reduce_only=False)
          .exclude(intent_key=exclude_key).select_related("symbol"))
    for intent in qs:
        unsent = sum((to_decimal(item["amount"], "plan amount") for item in (intent.plan or [])[intent.next_slice:]),
                     ZERO)
        out.append(InFlightEntry(symbol=intent.symbol.symbol, sector=intent.symbol.sector, side=Side(intent.side),
                                 size_usd=intent.size_usd, unsent_amount=unsent))
    return out


# --- the API's lists (trading/api.py filters them with trading/filters.py) --------------------
# These return QuerySets (the API filters and paginates them further).


def position_entry_trace(position_id: str | int) -> str | None:
    """The trace id a position was opened under (its entry signal's), or None when unknown."""
    if not str(position_id).isdigit():
        return None
    return Position.objects.filter(pk=int(position_id)).values_list("trace_id", flat=True).first() or None


def position_list(*, exchange: str):
    """Positions on `exchange`, newest first."""
    return Position.objects.filter(exchange=exchange).select_related("symbol").order_by("-opened_at", "-pk")


def order_list(*, exchange: str):
    """Orders on `exchange`, newest first."""
    return Order.objects.filter(exchange=exchange).select_related("symbol", "intent").order_by("-created_at", "-pk")


def execution_intent_list():
    """Execution intents on every exchange, newest first."""
    from trading.models import ExecutionIntent

    return ExecutionIntent.objects.select_related("symbol").order_by("-created_at", "-pk")


def reconciliation_run_list():
    """Reconciliation runs, newest first."""
    from trading.models import ReconciliationRun

    return ReconciliationRun.objects.order_by("-started_at", "-pk")
