from django.contrib import admin

from ai.models import UniverseSnapshot


@admin.register(UniverseSnapshot)
class UniverseSnapshotAdmin(admin.ModelAdmin):
    list_display = ["created_at", "exchange", "timeframe", "top_symbols", "ranked_count", "excluded_count"]
    readonly_fields = ["created_at", "exchange", "timeframe", "params", "ranked", "excluded", "trace_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="top 5")
    def top_symbols(self, obj):
        return ", ".join(r["symbol"] for r in obj.ranked[:5])

    @admin.display(description="ranked")
    def ranked_count(self, obj):
        return len(obj.ranked)

    @admin.display(description="filtered out")
    def excluded_count(self, obj):
        return len(obj.excluded)
