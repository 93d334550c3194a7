"""Admin for market data and the paper exchange. Paper state changes only through the exchange
(orders, fills, funding), so its records are read-only here."""
from django.contrib import admin

from trading.models import (
    Candle,
    PaperAccount,
    PaperBalance,
    PaperFunding,
    PaperOrder,
    PaperPosition,
    PaperTrade,
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
