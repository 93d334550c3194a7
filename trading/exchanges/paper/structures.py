"""ccxt-unified structures (plain dicts) from the paper exchange's rows.

Numbers leave as floats, as ccxt returns them; `info` keeps the exact Decimal strings.
Balances are shown to 8 decimals so that free + used == total holds exactly in floats
(8 decimals of amounts below 10^7 fit a double's 15 significant digits).
Timestamps are wall-clock times at which the paper exchange recorded the event; the market
time a fill used is in `info.marketTime`.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from trading.exchanges.paper import engine
from trading.marketdata import timeframes
from trading.models import PaperBalance, PaperOrder, PaperPosition, PaperTrade, Symbol

BALANCE_QUANTUM = Decimal("1e-8")
# Binance-like market ids: BTCUSDT for spot; perpetuals get a suffix so ids stay unique.
PERP_ID_SUFFIX = "_PERP"


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def ms(dt: datetime | None) -> int | None:
    return None if dt is None else timeframes.to_ms(dt)


def iso(timestamp_ms: int | None) -> str | None:
    if timestamp_ms is None:
        return None
    dt = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def market_id(symbol: Symbol) -> str:
    base = f"{symbol.base}{symbol.quote}"
    return base + PERP_ID_SUFFIX if symbol.settle else base


def market(symbol: Symbol, config: engine.FillConfig) -> dict:
    perp = bool(symbol.settle)
    return {
        "id": market_id(symbol),
        "lowercaseId": market_id(symbol).lower(),
        "symbol": symbol.symbol,
        "base": symbol.base,
        "quote": symbol.quote,
        "settle": symbol.settle or None,
        "baseId": symbol.base,
        "quoteId": symbol.quote,
        "settleId": symbol.settle or None,
        "type": "swap" if perp else "spot",
        "spot": not perp,
        "margin": False,
        "swap": perp,
        "future": False,
        "option": False,
        "index": None,
        "active": symbol.active,
        "contract": perp,
        "linear": True if perp else None,
        "inverse": False if perp else None,
        "subType": "linear" if perp else None,
        "taker": float(config.taker_fee_rate),
        "maker": float(config.maker_fee_rate),
        "contractSize": 1.0 if perp else None,
        "expiry": None,
        "expiryDatetime": None,
        "strike": None,
        "optionType": None,
        "precision": {"amount": float(symbol.lot_size), "price": float(symbol.tick_size), "cost": None,
                      "base": None, "quote": None},
        "limits": {
            "leverage": {"min": 1.0 if perp else None, "max": float(config.max_leverage) if perp else None},
            "amount": {"min": float(symbol.lot_size), "max": None},
            "price": {"min": float(symbol.tick_size), "max": None},
            "cost": {"min": float(symbol.min_notional) if symbol.min_notional else None, "max": None},
            "market": {"min": float(symbol.lot_size), "max": None},
        },
        "marginModes": {"cross": False, "isolated": perp},
        "created": ms(symbol.created_at),
        "info": {"id": symbol.pk, "sector": symbol.sector, "tickSize": _s(symbol.tick_size),
                 "lotSize": _s(symbol.lot_size), "minNotional": _s(symbol.min_notional)},
    }


def fee(cost: Decimal, currency: str, rate: Decimal | None = None) -> dict:
    out = {"cost": float(cost), "currency": currency}
    if rate is not None:
        out["rate"] = float(rate)
    return out


def trade(t: PaperTrade, symbol_name: str, order_type: str | None = None) -> dict:
    ts = ms(t.timestamp)
    f = fee(t.fee, t.fee_currency)
    return {
        "info": {"id": t.trade_id, "orderId": None, "price": _s(t.price), "qty": _s(t.amount), "cost": _s(t.cost),
                 "fee": _s(t.fee), "realizedPnl": _s(t.realized_pnl), "marketTime": t.market_time_ms},
        "id": t.trade_id,
        "timestamp": ts,
        "datetime": iso(ts),
        "symbol": symbol_name,
        "order": None,
        "type": order_type,
        "side": t.side,
        "takerOrMaker": t.taker_or_maker,
        "price": float(t.price),
        "amount": float(t.amount),
        "cost": float(t.cost),
        "fee": f,
        "fees": [dict(f)],
    }


def order(o: PaperOrder, symbol_name: str, trades: Iterable[PaperTrade] = ()) -> dict:
    ts = ms(o.created_at)
    tr = []
    for t in trades:
        d = trade(t, symbol_name, o.type)
        d["order"] = o.exchange_order_id
        d["info"]["orderId"] = o.exchange_order_id
        tr.append(d)
    f = fee(o.fee, o.fee_currency)
    price = o.price if o.type == engine.LIMIT else o.average
    return {
        "info": {"orderId": o.exchange_order_id, "clientOrderId": o.client_order_id, "status": o.status,
                 "statusReason": o.status_reason, "price": _s(o.price), "origQty": _s(o.amount),
                 "executedQty": _s(o.filled), "cumQuote": _s(o.cost), "avgPrice": _s(o.average),
                 "reserved": _s(o.reserved), "reservedCurrency": o.reserved_currency,
                 "arrivalMarketTime": o.arrival_ms, "leverage": o.leverage},
        "id": o.exchange_order_id,
        "clientOrderId": o.client_order_id,
        "timestamp": ts,
        "datetime": iso(ts),
        "lastTradeTimestamp": ms(o.last_trade_at),
        "lastUpdateTimestamp": ms(o.updated_at),
        "symbol": symbol_name,
        "type": o.type,
        "timeInForce": o.time_in_force,
        "postOnly": False,
        "reduceOnly": o.reduce_only,
        "side": o.side,
        "price": _f(price),
        "triggerPrice": None,
        "stopPrice": None,
        "takeProfitPrice": None,
        "stopLossPrice": None,
        "amount": float(o.amount),
        "cost": float(o.cost),
        "average": _f(o.average),
        "filled": float(o.filled),
        "remaining": float(o.remaining),
        "status": o.status,
        "fee": f,
        "fees": [dict(f)],
        "trades": tr,
        "marginMode": "isolated" if o.symbol.settle else None,
        "leverage": o.leverage if o.symbol.settle else None,
        "hedged": False if o.symbol.settle else None,
    }


def balance(rows: Iterable[PaperBalance], now_ms: int) -> dict:
    out: dict = {"info": [], "timestamp": now_ms, "datetime": iso(now_ms), "free": {}, "used": {}, "total": {}}
    for b in rows:
        free = b.free.quantize(BALANCE_QUANTUM)
        used = b.used.quantize(BALANCE_QUANTUM)
        total = free + used
        out["info"].append({"asset": b.currency, "free": _s(b.free), "used": _s(b.used)})
        out["free"][b.currency] = float(free)
        out["used"][b.currency] = float(used)
        out["total"][b.currency] = float(total)
        out[b.currency] = {"free": float(free), "used": float(used), "total": float(total)}
    return out


def position(p: PaperPosition, mark_price: Decimal, config: engine.FillConfig, now_ms: int) -> dict:
    contracts, entry, margin = p.contracts, p.entry_price, p.isolated_margin
    sign = 1 if p.side == engine.LONG else -1
    upnl = engine.q12((mark_price - entry) * contracts * sign)
    notional = contracts * mark_price
    rate, _amount = engine.maintenance_tier(notional, config.maintenance_tiers)
    mm = engine.maintenance_margin(contracts, mark_price, config.maintenance_tiers)
    initial = engine.q12(contracts * entry / p.leverage)
    collateral = margin + upnl
    return {
        "info": {"symbolId": p.symbol_id, "side": p.side, "contracts": _s(contracts), "entryPrice": _s(entry),
                 "isolatedMargin": _s(margin), "liquidationPrice": _s(p.liquidation_price),
                 "realizedPnl": _s(p.realized_pnl), "openedMarketTime": p.opened_market_ms},
        "id": None,
        "symbol": p.symbol.symbol,
        "timestamp": now_ms,
        "datetime": iso(now_ms),
        "lastUpdateTimestamp": ms(p.updated_at),
        "contracts": float(contracts),
        "contractSize": 1.0,
        "side": p.side,
        "notional": float(notional),
        "leverage": float(p.leverage),
        "unrealizedPnl": float(upnl),
        "realizedPnl": float(p.realized_pnl),
        "positionMargin": float(margin),
        "collateral": float(collateral),
        "entryPrice": float(entry),
        "markPrice": float(mark_price),
        "lastPrice": float(mark_price),
        "liquidationPrice": _f(p.liquidation_price),
        "marginMode": "isolated",
        "isolated": True,
        "hedged": False,
        "maintenanceMargin": float(mm),
        "maintenanceMarginPercentage": float(rate),
        "initialMargin": float(initial),
        "initialMarginPercentage": float(Decimal(1) / p.leverage),
        "marginRatio": float(mm / collateral) if collateral > 0 else None,
        "stopLossPrice": None,
        "takeProfitPrice": None,
        "percentage": float(upnl / initial * 100) if initial > 0 else None,
        "exitPrice": None,
    }
