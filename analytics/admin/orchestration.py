"""The orchestrator in the admin: HFOS decisions with every directive (accepted, or overruled with
what beat it and why), and position intelligence per position. Read-only: they are a record."""
from __future__ import annotations

from django.contrib import admin

from analytics.models import HfosDecision, HfosDirective, PositionAssessment
from qtweb.admin import ReadOnlyAdmin


class HfosDirectiveInline(admin.TabularInline):
    model = HfosDirective
    fields = ["layer", "kind", "symbol", "amount_usd", "outcome", "reason", "overruled_by", "why", "position_id",
              "event_id"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(HfosDecision)
class HfosDecisionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "trigger", "accepted_count", "overruled_count", "skipped", "trace_id"]
    list_filter = ["directives__layer", "directives__outcome"]
    search_fields = ["=trace_id", "trigger", "directives__symbol"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in HfosDecision._meta.fields]
    inlines = [HfosDirectiveInline]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PositionAssessment)
class PositionAssessmentAdmin(ReadOnlyAdmin):
    list_display = ["position_id", "symbol", "label", "score", "pnl_pct", "short_reasons", "open", "assessed_at"]
    list_filter = ["label", "open"]
    search_fields = ["symbol", "=trace_id", "=position_id"]
    readonly_fields = [f.name for f in PositionAssessment._meta.fields]

    @admin.display(description="reasons")
    def short_reasons(self, obj):
        return "; ".join(str(r) for r in obj.reasons or [])[:200]

    def has_delete_permission(self, request, obj=None):
        return False
