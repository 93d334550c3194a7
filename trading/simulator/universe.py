"""The demo universe of the paper exchange: 36 USDT-margined perpetuals in 6 sectors, plus 6
spot markets that track their perpetual.

Prices, tick and lot sizes are close to Binance's in 2024-25 (meme coins quoted per 1000
units, as Binance lists them: 1000PEPE/USDT:USDT). Daily vol and quote volume are typical
magnitudes, not a forecast. The data is pure; only `symbols_upsert` touches the database.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.decimals import to_decimal
from trading.simulator.model import AssetSpec, SimConfig

PAPER_EXCHANGE = "paper"
QUOTE = "USDT"
# Binance's usual minimum order value on USDⓈ-M perpetuals and spot (BTC and ETH perps ask more).
DEFAULT_MIN_NOTIONAL = "5"

# Share of a symbol's diffusive variance explained by the market and by its sector: majors
# follow the market, memes and AI coins move more with their own crowd.
SECTOR_LOADINGS: dict[str, tuple[float, float]] = {
    "layer1": (0.50, 0.15),
    "layer2": (0.40, 0.25),
    "defi": (0.38, 0.22),
    "meme": (0.28, 0.30),
    "exchange": (0.40, 0.15),
    "ai": (0.32, 0.30),
}


@dataclass(frozen=True)
class DemoSymbol:
    base: str
    sector: str
    start_price: str
    tick_size: str
    lot_size: str
    daily_vol: float
    daily_quote_volume: float
    perpetual: bool = True
    min_notional: str = DEFAULT_MIN_NOTIONAL
    market_r2: float | None = None  # None: the sector's loading
    quote: str = QUOTE

    @property
    def settle(self) -> str:
        return self.quote if self.perpetual else ""

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}" + (f":{self.settle}" if self.perpetual else "")


def _perp(base, sector, price, tick, lot, vol, qv, **kw) -> DemoSymbol:
    return DemoSymbol(base, sector, price, tick, lot, vol, qv, **kw)


PERPETUALS: tuple[DemoSymbol, ...] = (
    # layer1
    _perp("BTC", "layer1", "67000", "0.1", "0.001", 0.028, 12e9, min_notional="100", market_r2=0.70),
    _perp("ETH", "layer1", "3400", "0.01", "0.001", 0.035, 7e9, min_notional="20", market_r2=0.62),
    _perp("SOL", "layer1", "160", "0.01", "0.01", 0.050, 2.5e9),
    _perp("ADA", "layer1", "0.45", "0.0001", "1", 0.050, 3e8),
    _perp("AVAX", "layer1", "28", "0.001", "1", 0.055, 3e8),
    _perp("DOT", "layer1", "6.5", "0.001", "0.1", 0.050, 2e8),
    _perp("SUI", "layer1", "1.8", "0.0001", "0.1", 0.070, 4e8),
    _perp("APT", "layer1", "9", "0.001", "0.1", 0.060, 1.5e8),
    _perp("NEAR", "layer1", "5.5", "0.001", "1", 0.060, 2e8),
    # layer2
    _perp("ARB", "layer2", "0.85", "0.0001", "0.1", 0.060, 2e8),
    _perp("OP", "layer2", "1.9", "0.0001", "0.1", 0.060, 1.5e8),
    _perp("POL", "layer2", "0.45", "0.0001", "1", 0.055, 1e8),
    _perp("STRK", "layer2", "0.55", "0.0001", "0.1", 0.070, 8e7),
    _perp("IMX", "layer2", "1.5", "0.0001", "1", 0.065, 6e7),
    # defi
    _perp("UNI", "defi", "8", "0.001", "1", 0.055, 2e8),
    _perp("AAVE", "defi", "160", "0.01", "0.1", 0.055, 2e8),
    _perp("LINK", "defi", "14", "0.001", "0.01", 0.050, 3e8),
    _perp("MKR", "defi", "1600", "0.1", "0.001", 0.050, 6e7),
    _perp("CRV", "defi", "0.35", "0.0001", "0.1", 0.070, 1e8),
    _perp("PENDLE", "defi", "4.5", "0.0001", "1", 0.075, 8e7),
    # meme
    _perp("DOGE", "meme", "0.13", "0.00001", "1", 0.060, 1.5e9),
    _perp("1000PEPE", "meme", "0.011", "0.0000001", "1", 0.080, 8e8),
    _perp("1000SHIB", "meme", "0.018", "0.000001", "1", 0.060, 2e8),
    _perp("WIF", "meme", "2.2", "0.0001", "0.1", 0.090, 4e8),
    _perp("1000BONK", "meme", "0.025", "0.000001", "1", 0.090, 2e8),
    _perp("1000FLOKI", "meme", "0.15", "0.00001", "1", 0.090, 1e8),
    # exchange tokens
    _perp("BNB", "exchange", "580", "0.01", "0.01", 0.030, 6e8),
    _perp("OKB", "exchange", "45", "0.001", "0.01", 0.035, 3e7),
    _perp("CRO", "exchange", "0.09", "0.00001", "1", 0.045, 2e7),
    _perp("BGB", "exchange", "1.1", "0.0001", "1", 0.040, 2e7),
    # ai / infrastructure
    _perp("FET", "ai", "1.4", "0.0001", "1", 0.075, 2e8),
    _perp("RENDER", "ai", "6", "0.001", "0.1", 0.075, 1.2e8),
    _perp("TAO", "ai", "380", "0.01", "0.001", 0.075, 8e7),
    _perp("WLD", "ai", "2.1", "0.0001", "1", 0.080, 1.5e8),
    _perp("FIL", "ai", "4.2", "0.001", "0.1", 0.060, 1e8),
    _perp("AR", "ai", "22", "0.001", "0.01", 0.070, 6e7),
)

# Spot markets: (base, tick, lot, daily quote volume); each tracks its perpetual's price.
_SPOT = (
    ("BTC", "0.01", "0.00001", 2.5e9),
    ("ETH", "0.01", "0.0001", 1.2e9),
    ("SOL", "0.01", "0.001", 5e8),
    ("BNB", "0.01", "0.001", 1.5e8),
    ("DOGE", "0.00001", "1", 3e8),
    ("LINK", "0.001", "0.01", 8e7),
)
_BY_BASE = {p.base: p for p in PERPETUALS}
SPOT: tuple[DemoSymbol, ...] = tuple(
    DemoSymbol(base, _BY_BASE[base].sector, _BY_BASE[base].start_price, tick, lot, _BY_BASE[base].daily_vol, qv,
               perpetual=False, market_r2=_BY_BASE[base].market_r2)
    for base, tick, lot, qv in _SPOT
)
DEMO_UNIVERSE: tuple[DemoSymbol, ...] = PERPETUALS + SPOT


def demo_assets() -> tuple[AssetSpec, ...]:
    out = []
    for d in DEMO_UNIVERSE:
        market_r2, sector_r2 = SECTOR_LOADINGS[d.sector]
        if d.market_r2 is not None:
            market_r2 = d.market_r2
            sector_r2 = min(sector_r2, 0.9 - market_r2)
        out.append(AssetSpec(
            symbol=d.symbol, sector=d.sector, perpetual=d.perpetual, start_price=float(d.start_price),
            tick_size=float(d.tick_size), lot_size=float(d.lot_size), daily_vol=d.daily_vol,
            daily_quote_volume=d.daily_quote_volume, market_r2=market_r2, sector_r2=sector_r2,
            tracks=None if d.perpetual else f"{d.base}/{d.quote}:{d.quote}",
        ))
    return tuple(out)


def demo_config(start_time_ms: int, **overrides) -> SimConfig:
    """The simulator config of the demo universe starting at `start_time_ms` (5m-aligned)."""
    return SimConfig(assets=demo_assets(), start_time_ms=start_time_ms, **overrides)


def symbols_upsert(*, exchange: str = PAPER_EXCHANGE) -> int:
    """Create or update the Symbol rows of the demo universe (idempotent); returns how many."""
    from django.db import transaction

    from trading.models import MarketType, Symbol

    with transaction.atomic():
        for d in DEMO_UNIVERSE:
            Symbol.objects.update_or_create(
                exchange=exchange, symbol=d.symbol,
                defaults={
                    "base": d.base, "quote": d.quote, "settle": d.settle,
                    "market_type": MarketType.PERPETUAL if d.perpetual else MarketType.SPOT,
                    "sector": d.sector, "tick_size": to_decimal(d.tick_size, "tick_size"),
                    "lot_size": to_decimal(d.lot_size, "lot_size"),
                    "min_notional": to_decimal(d.min_notional, "min_notional"), "active": True,
                },
            )
    return len(DEMO_UNIVERSE)
