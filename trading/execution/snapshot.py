"""Writing the account snapshot (trading/snapshots.py) from the execution side: after every
fill and every reconciliation, so the inference worker sizes from what execution knows instead
of reading the exchange itself for each signal."""
from __future__ import annotations

from django.utils import timezone

from core.decimals import ZERO
from core.enums import PositionSide
from qtweb.logging import get_logger
from trading import selectors as trading_sel
from trading.snapshots import AccountSnapshot, snapshot_store

log = get_logger(__name__)


def account_snapshot_build(view: trading_sel.AccountView, *, reason: str) -> AccountSnapshot:
    from risk.services.validation import day_start_equity

    now = timezone.now()
    by_symbol: dict = {}
    by_sector: dict = {}
    for p in view.positions:
        notional = p.notional_usd
        sign = PositionSide(p.side).sign
        by_symbol[p.symbol.symbol] = by_symbol.get(p.symbol.symbol, ZERO) + sign * notional
        sector = p.symbol.sector or "unassigned"
        by_sector[sector] = by_sector.get(sector, ZERO) + notional
    return AccountSnapshot(exchange=view.exchange, taken_at=now, balance_usd=trading_sel.quote_total(view.balance),
                           equity_usd=view.equity_usd, day_start_equity_usd=day_start_equity(view.equity_usd, now),
                           exposure_by_symbol=by_symbol, exposure_by_sector=by_sector, reason=reason)


def account_snapshot_refresh(*, reason: str, gateway=None, balance: dict | None = None) -> AccountSnapshot | None:
    """Read the account (with `balance` when the caller just fetched it) and store its snapshot.
    A failure is logged and leaves the old snapshot to age: readers then refuse to size on it."""
    try:
        snapshot = account_snapshot_build(trading_sel.account_view(gateway, balance=balance), reason=reason)
        snapshot_store(snapshot)
    except Exception as exc:
        log.error("account snapshot not refreshed", reason=reason, error=f"{type(exc).__name__}: {exc}")
        return None
    return snapshot
