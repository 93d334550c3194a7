"""Admin for market data and the paper exchange. Paper state changes only through the exchange
(orders, fills, funding), so its records are read-only here."""
from django.contrib import admin

from trading.models import (
    Candle,
    ExecutionIntent,
    Fill,
    Order,
    PaperAccount,
    PaperBalance,
    PaperFunding,
    PaperOrder,
    PaperPosition,
    PaperTrade,
    Position,
    ReconciliationRun,
    SimulatorState,
    Symbol,
)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = ["symbol", "exchange", "market_type", "sector", "tick_size", "lot_size", "min_notional", "active"]
    list_filter = ["exchange", "market_type", "sector", "active"]
    search_fields = ["symbol", "base"]
    list_editable = ["active"]  # taking a symbol out of the universe is an operator's call


@admin.register(Candle)
class CandleAdmin(ReadOnly):
    list_display = ["symbol", "timeframe", "open_time", "open", "high", "low", "close", "volume"]
    list_filter = ["timeframe", "symbol__exchange"]
    search_fields = ["symbol__symbol"]
    list_select_related = ["symbol"]
    date_hierarchy = "open_time"
    show_full_result_count = False  # millions of rows: no COUNT(*) per page


class BalanceInline(admin.TabularInline):
    model = PaperBalance
    extra = 0
    can_delete = False
    readonly_fields = ["currency", "free", "used"]
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PaperAccount)
class PaperAccountAdmin(ReadOnly):
    list_display = ["name", "quote_currency"]
    inlines = [BalanceInline]


@admin.register(PaperOrder)
class PaperOrderAdmin(ReadOnly):
    list_display = ["created_at", "account", "symbol", "side", "type", "amount", "filled", "price", "average",
                    "status", "client_order_id"]
    list_filter = ["status", "side", "type", "account"]
    search_fields = ["client_order_id", "exchange_order_id", "symbol__symbol"]
    list_select_related = ["symbol", "account"]


@admin.register(PaperTrade)
class PaperTradeAdmin(ReadOnly):
    list_display = ["timestamp", "account", "symbol", "side", "amount", "price", "fee", "taker_or_maker"]
    list_filter = ["side", "account"]
    list_select_related = ["symbol", "account"]


@admin.register(PaperPosition)
class PaperPositionAdmin(ReadOnly):
    list_display = ["account", "symbol", "side", "contracts", "entry_price", "leverage", "liquidation_price",
                    "realized_pnl"]
    list_select_related = ["symbol", "account"]


@admin.register(PaperFunding)
class PaperFundingAdmin(ReadOnly):
    list_display = ["funding_time", "account", "symbol", "side", "rate", "amount", "currency"]
    list_select_related = ["symbol", "account"]


@admin.register(SimulatorState)
class SimulatorStateAdmin(ReadOnly):
    list_display = ["name", "seed", "last_open_time", "updated_at"]
    exclude = ["state"]  # a large JSON blob; the fields above say where the simulator stands


# --- execution: intents, orders, fills, positions, reconciliation (read-only: only the
# execution services write them; search a trace id to follow one decision to its fills) ------


@admin.register(ExecutionIntent)
class ExecutionIntentAdmin(ReadOnly):
    list_display = ["created_at", "intent_key", "source", "symbol", "side", "amount", "size_usd", "leverage",
                    "strategy", "status", "filled_amount", "average_price", "created_by", "trace_id"]
    list_filter = ["status", "source", "strategy", "side", "symbol"]
    search_fields = ["=trace_id", "=intent_key", "symbol__symbol", "orders__client_order_id"]
    list_select_related = ["symbol"]
    date_hierarchy = "created_at"


class FillInline(admin.TabularInline):
    model = Fill
    extra = 0
    can_delete = False
    fields = ["timestamp", "trade_id", "price", "amount", "fee_usd", "taker_or_maker"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(ReadOnly):
    list_display = ["created_at", "client_order_id", "symbol", "side", "type", "amount", "price", "filled",
                    "average_price", "status", "origin", "strategy", "trace_id"]
    list_filter = ["status", "origin", "side", "type", "exchange", "symbol"]
    search_fields = ["=trace_id", "=client_order_id", "=exchange_order_id", "symbol__symbol"]
    list_select_related = ["symbol"]
    date_hierarchy = "created_at"
    inlines = [FillInline]


@admin.register(Fill)
class FillAdmin(ReadOnly):
    list_display = ["timestamp", "order", "trade_id", "price", "amount", "fee_usd", "taker_or_maker", "trace_id"]
    list_filter = ["exchange", "taker_or_maker", "order__symbol"]
    search_fields = ["=trace_id", "=trade_id", "=order__client_order_id"]
    list_select_related = ["order", "order__symbol"]


@admin.register(Position)
class PositionAdmin(ReadOnly):
    list_display = ["opened_at", "symbol", "side", "status", "amount", "entry_price", "mark_price", "leverage",
                    "unrealized_pnl_usd", "realized_pnl_usd", "exit_reason", "closed_at", "trace_id"]
    list_filter = ["status", "side", "exit_reason", "exchange", "symbol"]
    search_fields = ["=trace_id", "symbol__symbol", "intents__orders__client_order_id"]
    list_select_related = ["symbol"]
    date_hierarchy = "opened_at"


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnly):
    list_display = ["started_at", "exchange", "reason", "ok", "mismatch_count", "action_count", "finished_at",
                    "worker", "error"]
    list_filter = ["ok", "reason", "exchange"]
    search_fields = ["=trace_id", "worker"]
    date_hierarchy = "started_at"

    @admin.display(description="mismatches")
    def mismatch_count(self, obj):
        return len(obj.mismatches or [])

    @admin.display(description="actions")
    def action_count(self, obj):
        return len(obj.actions or [])
