"""Market data: the symbols we know and their candles."""
from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models

from trading.marketdata.timeframes import TIMEFRAMES

# Digits for prices and sizes: 18 before the point covers any quote amount, 12 after covers
# the smallest tick on listed crypto markets (e.g. 1e-8 on spot, 1e-10 on some perps).
PRICE_DIGITS, PRICE_DECIMALS = 30, 12
VOLUME_DIGITS, VOLUME_DECIMALS = 38, 12


class MarketType(models.TextChoices):
    SPOT = "spot", "spot"
    PERPETUAL = "swap", "perpetual (swap)"  # ccxt calls perpetuals "swap"


class Symbol(models.Model):
    exchange = models.CharField(max_length=32, help_text="gateway id: paper, binance, binanceusdm, ...")
    symbol = models.CharField(max_length=40, help_text="ccxt unified symbol: BTC/USDT or BTC/USDT:USDT")
    base = models.CharField(max_length=20)
    quote = models.CharField(max_length=10)
    settle = models.CharField(max_length=10, blank=True, default="")
    market_type = models.CharField(max_length=8, choices=MarketType.choices, default=MarketType.SPOT)
    sector = models.CharField(max_length=32, blank=True, default="")
    tick_size = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    lot_size = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    min_notional = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, default=Decimal("0"))
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["exchange", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], name="symbol_unique_per_exchange"),
            models.CheckConstraint(condition=models.Q(tick_size__gt=0), name="symbol_tick_size_positive"),
            models.CheckConstraint(condition=models.Q(lot_size__gt=0), name="symbol_lot_size_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} ({self.exchange})"

    def clean(self) -> None:
        import re

        from qtweb.events.schemas import SYMBOL_PATTERN

        if not re.match(SYMBOL_PATTERN, self.symbol):
            raise ValidationError({"symbol": f"{self.symbol!r} is not a unified symbol like BTC/USDT or BTC/USDT:USDT"})
        expected = f"{self.base}/{self.quote}" + (f":{self.settle}" if self.settle else "")
        if self.symbol != expected:
            raise ValidationError({"symbol": f"{self.symbol!r} does not match base/quote/settle ({expected})"})
        if (self.market_type == MarketType.PERPETUAL) != bool(self.settle):
            raise ValidationError({"market_type": "a perpetual has a settle currency (BTC/USDT:USDT); spot has none"})

    @property
    def is_perpetual(self) -> bool:
        return self.market_type == MarketType.PERPETUAL


class Candle(models.Model):
    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="candles")
    timeframe = models.CharField(max_length=3, choices=[(t, t) for t in TIMEFRAMES])
    open_time = models.DateTimeField(help_text="UTC start of the bar")
    open = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    high = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    low = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    close = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    volume = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)

    class Meta:
        # The unique index (symbol, timeframe, open_time) also serves "last N bars of M symbols"
        # (a backward scan per symbol), so no second index is needed.
        constraints = [
            models.UniqueConstraint(fields=["symbol", "timeframe", "open_time"], name="candle_unique_bar"),
            models.CheckConstraint(
                condition=models.Q(high__gte=models.F("low")) & models.Q(low__gt=0) & models.Q(volume__gte=0),
                name="candle_sane_ohlcv",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.timeframe} {self.open_time:%Y-%m-%d %H:%M}"
