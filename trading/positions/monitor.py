"""The position monitor: every POSITION_MONITOR_SECONDS from beat and on each new bar.

For each open position: mark price and unrealized PnL from the newest bar; a TP/SL/trailing hit,
judged against the stop in force BEFORE this bar, becomes a reduce-only market exit intent
(position.closed follows its fill); then the dynamic stop (ATR trailing, moved to break-even plus
the round trip's fees after the policy's profit trigger) follows the bar. Only bars that opened
after the position did are searched for highs and lows (a stop is never "hit" by a price from
before the entry), and never the bar that just moved the stop (its high and low came in an
unknown order).
"""
from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from core.decimals import to_decimal
from qtweb.logging import get_logger
from trading.exchanges.account import exchange_id
from trading.marketdata.reference import latest_bar_row
from trading.models import Position, PositionStatus
from trading.positions import math as pm
from trading.positions.services import atr

log = get_logger(__name__)


def _d(x) -> Decimal:
    return to_decimal(x)


def _refresh_liquidation_prices(positions: list[Position]) -> None:
    """The exchange computes liquidation prices (margin mode, tiers, funding paid): copy them."""
    from trading.exchanges.account import execution_gateway
    from trading.exchanges.errors import ExchangeError

    perps = [p for p in positions if p.symbol.market_type != "spot"]
    if not perps:
        return
    try:
        theirs = {p["symbol"]: p for p in execution_gateway().fetch_positions([p.symbol.symbol for p in perps])}
    except ExchangeError as exc:
        log.warning("liquidation prices not refreshed", error=str(exc))
        return
    for pos in perps:
        liq = (theirs.get(pos.symbol.symbol) or {}).get("liquidationPrice")
        if liq:
            value = to_decimal(liq, "liquidationPrice")
            if value > 0 and value != pos.liquidation_price:
                Position.objects.filter(pk=pos.pk).update(liquidation_price=value)
                pos.liquidation_price = value


def _monitor_position(pos: Position, exchange: str, policy) -> int:
    """Mark, check exits against the stop in force before this bar, then trail. 1 if an exit started."""
    from trading.execution.services import exit_intent, intent_process

    bar = latest_bar_row(exchange, pos.symbol.symbol)
    if not bar:
        return 0
    bar_ms, open_, high, low, close = int(bar[0]), _d(bar[1]), _d(bar[2]), _d(bar[3]), _d(bar[4])
    trailing = dict(pos.trailing or {})
    if trailing.get("open_bar_ms") is None:  # first look: the bar current at the entry
        trailing["open_bar_ms"] = bar_ms
    # A bar's high and low are searched for exits only if the bar began after the entry and did
    # not itself move the stop (within one bar the order of its high and low is unknown).
    usable = bar_ms > int(trailing["open_bar_ms"]) and bar_ms != int(trailing.get("stop_bar_ms") or -1)
    hi, lo = (high, low) if usable else (close, close)
    trigger = None
    with transaction.atomic():
        p = Position.objects.select_for_update().get(pk=pos.pk)
        if p.status != PositionStatus.OPEN:
            return 0
        p.mark_price = close
        p.unrealized_pnl_usd = pm.unrealized_pnl_usd(p.side, p.entry_price, close, p.amount)
        if p.stop_loss_price is not None or p.take_profit_price is not None:
            trigger = pm.exit_hit(side=p.side, high=hi, low=lo, close=close, stop_loss=p.stop_loss_price,
                                  take_profit=p.take_profit_price, trailing=bool(trailing.get("trailing_active")),
                                  open_=open_ if usable else None)
        if trigger is None and p.stop_loss_price is not None and bar_ms > int(trailing["open_bar_ms"]):
            entry_notional = p.entry_price * (p.max_amount or p.amount)
            # break-even covers the fees of the round trip (the entry's rate, paid twice)
            fees_pct = (p.fees_usd / entry_notional * 2 * 100) if entry_notional > 0 else Decimal("0")
            state = pm.TrailingState(stop_loss=p.stop_loss_price, take_profit=p.take_profit_price,
                                     best_price=to_decimal(trailing.get("best_price") or p.entry_price, "best_price"),
                                     break_even_done=bool(trailing.get("break_even_done")))
            new = pm.update_trailing(state, side=p.side, entry_price=p.entry_price, high=high, low=low,
                                     atr=atr(p.symbol_id), trailing_atr_multiple=policy.trailing_stop_atr_multiple,
                                     break_even_trigger_pct=policy.break_even_trigger_pct, fees_pct=fees_pct,
                                     tick_size=pos.symbol.tick_size)
            if new.stop_loss != p.stop_loss_price:
                trailing["trailing_active"] = True
                trailing["stop_bar_ms"] = bar_ms
            p.stop_loss_price = new.stop_loss
            trailing.update(best_price=str(new.best_price), break_even_done=new.break_even_done)
        p.trailing = trailing
        p.save(update_fields=["mark_price", "unrealized_pnl_usd", "stop_loss_price", "trailing", "updated_at"])
    if trigger is None:
        return 0
    reason, level = trigger
    intent = exit_intent(pos, reason=reason, key_suffix=f"{reason}:{bar_ms}")
    if intent is None:
        return 0
    log.info("exit triggered", position_id=pos.pk, symbol=pos.symbol.symbol, reason=reason, level=str(level),
             close=str(close))
    intent_process(intent.pk, intent=intent)
    return 1


def monitor_once(*, symbols: list[str] | None = None) -> dict:
    from risk.services.policy import policy_get

    exchange = exchange_id()
    qs = Position.objects.filter(exchange=exchange, status=PositionStatus.OPEN).select_related("symbol")
    if symbols:
        qs = qs.filter(symbol__symbol__in=symbols)
    positions = list(qs)
    if not positions:
        return {"positions": 0, "exits": 0}
    policy = policy_get()
    if not symbols:  # the periodic run; a bar's run is about that bar's prices
        _refresh_liquidation_prices(positions)
    exits = 0
    for pos in positions:
        try:
            exits += _monitor_position(pos, exchange, policy)
        except Exception as exc:  # one position's failure must not leave the others unwatched
            log.error("position monitor failed for one position", position_id=pos.pk, symbol=pos.symbol.symbol,
                      error=f"{type(exc).__name__}: {exc}")
    return {"positions": len(positions), "exits": exits}
