"""Market data: the symbols we know and their candles."""
from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models

from core.enums import (
    ExchangeOrderStatus,
    ExecutionStrategy,
    IntentSource,
    IntentStatus,
    MarketType,
    OrderStatus,
    OrderType,
    PositionSide,
    PositionStatus,
    Side,
    Timeframe,
    choices,
)
from core.limits import NAME_MAX, TEXT_MAX

# re-exported
__all__ = ["IntentSource", "IntentStatus", "MarketType", "OrderStatus", "PaperOrderStatus", "PositionStatus"]

# Digits for prices and sizes: 18 before the point covers any quote amount, 12 after covers
# the smallest tick on listed crypto markets (e.g. 1e-8 on spot, 1e-10 on some perps).
PRICE_DIGITS, PRICE_DECIMALS = 30, 12
VOLUME_DIGITS, VOLUME_DECIMALS = 38, 12


class Symbol(models.Model):
    exchange = models.CharField(max_length=32, help_text="gateway id: paper, binance, binanceusdm, ...")
    symbol = models.CharField(max_length=40, help_text="ccxt unified symbol: BTC/USDT or BTC/USDT:USDT")
    base = models.CharField(max_length=20)
    quote = models.CharField(max_length=10)
    settle = models.CharField(max_length=10, blank=True, default="")
    market_type = models.CharField(max_length=8, default=MarketType.SPOT,
                                   choices=choices(MarketType, {MarketType.PERPETUAL: "perpetual (swap)"}))
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
    timeframe = models.CharField(max_length=3, choices=choices(Timeframe))
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


PaperOrderStatus = ExchangeOrderStatus  # the paper exchange answers like a real one


class PaperOrder(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="orders")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="paper_orders")
    exchange_order_id = models.CharField(max_length=40, unique=True)
    client_order_id = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=choices(Side))
    type = models.CharField(max_length=8, choices=choices(OrderType))
    time_in_force = models.CharField(max_length=3, default="GTC")
    price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True, blank=True)
    amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    filled = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    remaining = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    average = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True, blank=True)
    cost = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    status = models.CharField(max_length=8, default=ExchangeOrderStatus.OPEN,
                              choices=choices(ExchangeOrderStatus, {ExchangeOrderStatus.CLOSED: "closed (filled)"}))
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
            models.UniqueConstraint(fields=["account", "client_order_id"],
                                    condition=models.Q(status=PaperOrderStatus.OPEN),
                                    name="paper_order_client_id_unique_open"),
            models.CheckConstraint(condition=models.Q(amount__gt=0) & models.Q(filled__gte=0)
                                   & models.Q(remaining__gte=0), name="paper_order_sane_amounts"),
        ]
        indexes = [
            models.Index(fields=["account", "status"], name="paper_order_account_status"),
            models.Index(fields=["symbol"], condition=models.Q(status=PaperOrderStatus.OPEN),
                         name="paper_order_open_by_symbol"),
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
    side = models.CharField(max_length=5, choices=choices(PositionSide), default=PositionSide.LONG)
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


# --- execution: intents, orders, fills, positions, reconciliation ------------------------------


INTENT_SOURCE_LABELS = {
    IntentSource.SIGNAL: "signal.generated + rl.decision",
    IntentSource.MANUAL: "execution.request (operator)",
    IntentSource.PORTFOLIO_BALANCE: "portfolio.balance",
    IntentSource.PROFIT_AMPLIFICATION: "profit.amplification",
    IntentSource.POSITION_EXIT: "position monitor exit (TP/SL/trailing)",
    IntentSource.EMERGENCY: "emergency stop flatten",
}
INTENT_STATUS_LABELS = {
    IntentStatus.PENDING: "pending (not yet validated)",
    IntentStatus.REJECTED: "rejected by the risk validator",
    IntentStatus.SHADOW: "approved in SHADOW mode: recorded, no order",
    IntentStatus.WORKING: "working (orders being placed)",
    IntentStatus.DONE: "done",
    IntentStatus.STOPPED: "stopped (slippage cap, mode change or cancel)",
    IntentStatus.FAILED: "failed",
}


class ExecutionIntent(models.Model):
    """What the system decided to trade and how; one row per intent, keyed deterministically by
    its source (the signal's event id, the operator's client id), so a duplicate delivery finds
    the row it already made instead of trading twice."""

    intent_key = models.CharField(max_length=NAME_MAX, unique=True)
    source = models.CharField(max_length=24, choices=choices(IntentSource, INTENT_SOURCE_LABELS))
    exchange = models.CharField(max_length=32)
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="execution_intents")
    side = models.CharField(max_length=4, choices=choices(Side))
    amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                 help_text="base quantity to trade")
    size_usd = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    leverage = models.PositiveSmallIntegerField(default=1)
    reduce_only = models.BooleanField(default=False)
    order_type = models.CharField(max_length=8, default=OrderType.MARKET)
    limit_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True, blank=True)
    requested_strategy = models.CharField(max_length=8, default=ExecutionStrategy.SMART)
    params = models.JSONField(default=dict, blank=True,
                              help_text="strategy parameters: slices, duration_seconds, limit_timeout_seconds, ...")
    strategy = models.CharField(max_length=8, blank=True, default="", help_text="the strategy that ran")
    status = models.CharField(max_length=8, choices=choices(IntentStatus, INTENT_STATUS_LABELS),
                              default=IntentStatus.PENDING)
    reason = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    arrival_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                        blank=True, help_text="reference price when the intent was approved")
    plan = models.JSONField(default=list, blank=True, help_text="[{index, amount, not_before}] slices")
    next_slice = models.PositiveIntegerField(default=0)
    next_action_at = models.DateTimeField(null=True, blank=True, db_index=True)
    filled_amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                        default=Decimal("0"))
    average_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                        blank=True)
    fees_usd = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    slippage_pct = models.DecimalField(max_digits=16, decimal_places=6, null=True, blank=True)
    confidence = models.DecimalField(max_digits=8, decimal_places=6, null=True, blank=True)
    entry_model = models.CharField(max_length=NAME_MAX, blank=True, default="")
    stop_loss_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                          blank=True)
    take_profit_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                            blank=True)
    exit_reason = models.CharField(max_length=16, blank=True, default="", help_text="for an exit intent")
    position = models.ForeignKey("Position", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="intents")
    policy_version = models.PositiveIntegerField(null=True, blank=True)
    risk_decision_id = models.BigIntegerField(null=True, blank=True)
    trace_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.intent_key}: {self.side} {self.amount} {self.symbol_id} [{self.status}]"


ORDER_STATUS_LABELS = {
    OrderStatus.PENDING_SUBMIT: "recorded, not yet acknowledged by the exchange",
    OrderStatus.PARTIALLY_FILLED: "partially filled, still open",
    OrderStatus.UNKNOWN: "outcome unknown: reconciliation decides",
}


OPEN_ORDER_STATUSES = (OrderStatus.PENDING_SUBMIT, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED,
                       OrderStatus.UNKNOWN)


class OrderOrigin(models.TextChoices):
    SYSTEM = "system", "placed by this system"
    EXTERNAL = "external", "found on the exchange, not placed by this system"


class Order(models.Model):
    """One order on the exchange, recorded BEFORE it is sent (status pending) so a crash between
    sending and storing the answer leaves a row reconciliation can complete by clientOrderId."""

    intent = models.ForeignKey(ExecutionIntent, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="orders")
    slice_index = models.PositiveIntegerField(default=0)
    exchange = models.CharField(max_length=32)
    client_order_id = models.CharField(max_length=64)
    exchange_order_id = models.CharField(max_length=64, blank=True, default="")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=choices(Side))
    type = models.CharField(max_length=8, default=OrderType.MARKET)
    amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True, blank=True)
    filled = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    average_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                        blank=True)
    fee_usd = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    status = models.CharField(max_length=9, choices=choices(OrderStatus, ORDER_STATUS_LABELS),
                              default=OrderStatus.PENDING_SUBMIT)
    status_reason = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    reduce_only = models.BooleanField(default=False)
    leverage = models.PositiveSmallIntegerField(default=1)
    strategy = models.CharField(max_length=8, blank=True, default="")
    origin = models.CharField(max_length=8, choices=OrderOrigin.choices, default=OrderOrigin.SYSTEM)
    policy_version = models.PositiveIntegerField(null=True, blank=True)
    submit_attempts = models.PositiveSmallIntegerField(default=0)
    acknowledged_at = models.DateTimeField(null=True, blank=True, help_text="when the exchange first answered")
    trace_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "client_order_id"], name="order_client_id_unique"),
        ]
        indexes = [models.Index(fields=["exchange", "status"], name="order_exchange_status")]

    def __str__(self) -> str:
        return f"{self.client_order_id} {self.side} {self.amount} {self.symbol_id} [{self.status}]"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ORDER_STATUSES


class Fill(models.Model):
    """One execution (ccxt trade) of an order, stored once per exchange trade id."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fills")
    exchange = models.CharField(max_length=32)
    trade_id = models.CharField(max_length=64)
    price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS)
    fee_usd = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    taker_or_maker = models.CharField(max_length=5, blank=True, default="")
    timestamp = models.DateTimeField()
    trace_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["timestamp", "pk"]
        constraints = [models.UniqueConstraint(fields=["exchange", "trade_id"], name="fill_trade_once")]

    def __str__(self) -> str:
        return f"{self.trade_id}: {self.amount} @ {self.price}"


class Position(models.Model):
    """A position as this system tracks it (the exchange's view is reconciled against it)."""

    exchange = models.CharField(max_length=32)
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="positions")
    side = models.CharField(max_length=5, choices=choices(PositionSide))
    status = models.CharField(max_length=6, choices=choices(PositionStatus), default=PositionStatus.OPEN)
    amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                 help_text="open base quantity")
    max_amount = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                     default=Decimal("0"), help_text="largest size held (for PnL %)")
    entry_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    leverage = models.PositiveSmallIntegerField(default=1)
    stop_loss_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                          blank=True)
    take_profit_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                            blank=True)
    trailing = models.JSONField(default=dict, blank=True,
                                help_text="best_price, break_even_done, trailing_active")
    liquidation_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                            blank=True)
    mark_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True,
                                     blank=True)
    realized_pnl_usd = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                           default=Decimal("0"), help_text="net of fees")
    unrealized_pnl_usd = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS,
                                             default=Decimal("0"))
    fees_usd = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_DECIMALS, default=Decimal("0"))
    entry_model = models.CharField(max_length=NAME_MAX, blank=True, default="")
    entry_confidence = models.DecimalField(max_digits=8, decimal_places=6, null=True, blank=True)
    exit_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True, blank=True)
    exit_reason = models.CharField(max_length=16, blank=True, default="")
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    trace_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], condition=models.Q(status=PositionStatus.OPEN),
                                    name="position_one_open_per_symbol"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.side} {self.amount} @ {self.entry_price} [{self.status}]"

    @property
    def notional_usd(self) -> Decimal:
        return self.amount * (self.mark_price or self.entry_price)

    @property
    def exit_pending(self) -> bool:
        """An exit (a reduce-only intent of this position) is being validated or worked."""
        return self.intents.filter(reduce_only=True, status__in=(IntentStatus.PENDING, IntentStatus.WORKING)).exists()


class ReconciliationRun(models.Model):
    """One comparison of the database with the exchange: what differed and what was done."""

    exchange = models.CharField(max_length=32)
    worker = models.CharField(max_length=200, blank=True, default="")
    reason = models.CharField(max_length=32, default="periodic")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    mismatches = models.JSONField(default=list, blank=True)
    actions = models.JSONField(default=list, blank=True)
    error = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"reconciliation {self.started_at:%Y-%m-%d %H:%M:%S} {'ok' if self.ok else 'FAILED'}"
