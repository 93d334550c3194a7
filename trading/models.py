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


# --- Paper exchange (trading/exchanges/paper/) -------------------------------------------
# Every write to an account's balances, orders, trades, positions and funding happens in one
# transaction holding the PaperAccount row lock (select_for_update): two processes cannot
# double-spend. Money columns use the candle precision (12 decimals).


class PaperAccount(models.Model):
    name = models.CharField(max_length=64, unique=True)
    quote_currency = models.CharField(max_length=10, default="USDT")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class PaperBalance(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="balances")
    currency = models.CharField(max_length=10)
    free = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    used = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"),
                               help_text="held by open orders and isolated position margin")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "currency"], name="paper_balance_unique_currency"),
            models.CheckConstraint(condition=models.Q(free__gte=0) & models.Q(used__gte=0),
                                   name="paper_balance_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.currency} free={self.free} used={self.used}"


class PaperOrderStatus(models.TextChoices):
    OPEN = "open", "open"
    CLOSED = "closed", "closed (filled)"
    CANCELED = "canceled", "canceled"
    REJECTED = "rejected", "rejected"


class PaperOrder(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="orders")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="paper_orders")
    exchange_order_id = models.CharField(max_length=40, unique=True)
    client_order_id = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=[("buy", "buy"), ("sell", "sell")])
    type = models.CharField(max_length=8, choices=[("market", "market"), ("limit", "limit")])
    time_in_force = models.CharField(max_length=3, default="GTC")
    price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True, blank=True)
    amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    filled = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    remaining = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    average = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True, blank=True)
    cost = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    status = models.CharField(max_length=8, choices=PaperOrderStatus.choices, default=PaperOrderStatus.OPEN)
    status_reason = models.CharField(max_length=200, blank=True, default="")
    reduce_only = models.BooleanField(default=False)
    leverage = models.PositiveSmallIntegerField(default=1)
    fee = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    fee_currency = models.CharField(max_length=10)
    reserved = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"),
                                   help_text="funds held in `used` for the unfilled remainder")
    reserved_currency = models.CharField(max_length=10, blank=True, default="")
    arrival_ms = models.BigIntegerField(help_text="market time (ms) at which the order reached the book")
    arrived = models.BooleanField(default=True, help_text="False while a latency-delayed order waits for a bar")
    last_bar_ms = models.BigIntegerField(null=True, blank=True, help_text="open time of the last bar matched")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    last_trade_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # As on Binance: a clientOrderId may be reused once its order is no longer open.
            models.UniqueConstraint(fields=["account", "client_order_id"], condition=models.Q(status="open"),
                                    name="paper_order_client_id_unique_open"),
            models.CheckConstraint(condition=models.Q(amount__gt=0) & models.Q(filled__gte=0)
                                   & models.Q(remaining__gte=0), name="paper_order_sane_amounts"),
        ]
        indexes = [
            models.Index(fields=["account", "status"], name="paper_order_account_status"),
            models.Index(fields=["symbol"], condition=models.Q(status="open"), name="paper_order_open_by_symbol"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange_order_id} {self.side} {self.amount} {self.symbol_id} {self.status}"


class PaperTrade(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="trades")
    order = models.ForeignKey(PaperOrder, on_delete=models.CASCADE, related_name="trades")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="paper_trades")
    trade_id = models.CharField(max_length=40, unique=True)
    side = models.CharField(max_length=4)
    price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    cost = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    fee = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    fee_currency = models.CharField(max_length=10)
    taker_or_maker = models.CharField(max_length=5)
    realized_pnl = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                       default=Decimal("0"))
    timestamp = models.DateTimeField()
    market_time_ms = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["account", "timestamp"], name="paper_trade_account_time")]

    def __str__(self) -> str:
        return f"{self.trade_id} {self.side} {self.amount}@{self.price}"


class PaperPosition(models.Model):
    """One per account and perpetual (one-way mode). A flat row (contracts 0) keeps the
    symbol's leverage setting."""

    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="positions")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="paper_positions")
    side = models.CharField(max_length=5, choices=[("long", "long"), ("short", "short")], default="long")
    contracts = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    entry_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, default=Decimal("0"))
    leverage = models.PositiveSmallIntegerField(default=1)
    isolated_margin = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                          default=Decimal("0"))
    liquidation_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                            blank=True)
    realized_pnl = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                       default=Decimal("0"))
    opened_market_ms = models.BigIntegerField(null=True, blank=True, help_text="market time the position opened")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "symbol"], name="paper_position_unique_symbol"),
            models.CheckConstraint(condition=models.Q(contracts__gte=0) & models.Q(isolated_margin__gte=0),
                                   name="paper_position_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.symbol_id} {self.side} {self.contracts}"


class PaperFunding(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="funding_payments")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="paper_funding_payments")
    funding_time = models.DateTimeField()
    side = models.CharField(max_length=5)
    contracts = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    mark_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    rate = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                 help_text="received (+) or paid (-) by the position")
    currency = models.CharField(max_length=10)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # a re-delivered bar never pays the same funding twice
            models.UniqueConstraint(fields=["account", "symbol", "funding_time"], name="paper_funding_once"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.symbol_id} {self.funding_time:%Y-%m-%d %H:%M} {self.amount}"


class SimulatorState(models.Model):
    """Where the market simulator (trading/simulator) stands, so every process continues the
    same path: its seed, the open time of the last bar it generated and its state as JSON."""

    name = models.CharField(max_length=32, unique=True)
    seed = models.BigIntegerField()
    last_open_time = models.DateTimeField(null=True, blank=True, help_text="open time of the last generated bar")
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"simulator {self.name} (seed {self.seed}) at {self.last_open_time}"
