"""Reads for the paper exchange: markets, market conditions, configuration."""
from __future__ import annotations

import numpy as np
from django.conf import settings

from core.decimals import to_decimal
from trading.exchanges.errors import BadSymbol, ExchangeNotAvailable
from trading.exchanges.paper import engine
from trading.marketdata import selectors as md
from trading.marketdata import timeframes
from trading.models import MarketType, Symbol

PAPER = engine.EXCHANGE_ID


def default_config() -> engine.FillConfig:
    """FillConfig from settings.PAPER_EXCHANGE (a dict of FillConfig fields), else defaults."""
    overrides = dict(getattr(settings, "PAPER_EXCHANGE", None) or {})
    for key, value in list(overrides.items()):
        if isinstance(value, float | str) and key.endswith(("_rate", "_coefficient", "_spread", "_factor",
                                                              "_slippage")):
            overrides[key] = to_decimal(value, f"PAPER_EXCHANGE[{key!r}]")
    return engine.FillConfig(**overrides)


def market_spec(symbol: Symbol) -> engine.MarketSpec:
    return engine.MarketSpec(
        symbol=symbol.symbol, base=symbol.base, quote=symbol.quote, settle=symbol.settle,
        is_perpetual=symbol.market_type == MarketType.PERPETUAL, tick_size=symbol.tick_size.normalize(),
        lot_size=symbol.lot_size.normalize(), min_notional=symbol.min_notional.normalize(),
    )


def paper_symbols() -> dict[str, Symbol]:
    return {s.symbol: s for s in Symbol.objects.filter(exchange=PAPER)}


def get_symbol(name: str, cache: dict[str, Symbol] | None = None) -> Symbol:
    if cache is not None and name in cache:
        return cache[name]
    try:
        sym = Symbol.objects.get(exchange=PAPER, symbol=name)
    except Symbol.DoesNotExist:
        raise BadSymbol(f"unknown symbol {name!r} on {PAPER}", exchange=PAPER) from None
    if cache is not None:
        cache[name] = sym
    return sym


def bar_timeframe(symbol: Symbol, preferred: str | None = None) -> str:
    """The timeframe the paper exchange trades `symbol` on: `preferred` if given, else the
    finest stored. Raises ExchangeNotAvailable when the symbol has no candles at all."""
    if preferred:
        timeframes.seconds(preferred)
        return preferred
    stored = md.stored_timeframes(symbol.pk)
    for tf in timeframes.TIMEFRAMES:
        if tf in stored:
            return tf
    raise ExchangeNotAvailable(f"no market data for {symbol.symbol} yet (no candles stored)", exchange=PAPER)


def conditions(symbol: Symbol, timeframe: str, window: int) -> engine.MarketConditions:
    rows = md.last_bars([symbol.pk], timeframe, window)[symbol.pk]
    cond = engine.conditions_from_bars(rows, timeframes.milliseconds(timeframe), window)
    if cond is None:
        raise ExchangeNotAvailable(f"no {timeframe} market data for {symbol.symbol} yet", exchange=PAPER)
    return cond


def recent_bars(symbol: Symbol, timeframe: str, n: int) -> np.ndarray:
    return md.last_bars([symbol.pk], timeframe, n)[symbol.pk]
