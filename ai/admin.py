from django.contrib import admin, messages

from ai.models import EvaluationReport, MetaStrategyDecision, MetaStrategyState, ModelVersion, UniverseSnapshot
from qtweb.admin import ReadOnlyAdmin


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


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Only champions serve. Promote and retire go through ai.registry (events, one champion)."""

    list_display = ["model_type", "version", "status", "quarantined_at", "created_at", "promoted_at",
                    "feature_version", "short_metrics", "status_reason"]
    list_filter = ["model_type", "status"]
    # The drift reference is histograms of every feature: shown as a summary, not as raw JSON.
    readonly_fields = [*(f.name for f in ModelVersion._meta.fields if f.name != "drift_reference"),
                       "drift_reference_summary"]
    exclude = ["drift_reference"]
    actions = ["promote_selected", "retire_selected"]

    @admin.display(description="drift reference")
    def drift_reference_summary(self, obj):
        ref = obj.drift_reference or {}
        if not ref:
            return "none (trained before drift references were kept)"
        return f"{len(ref.get('features', {}))} feature histograms, validation P(up) histogram: {'prediction' in ref}"

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="metrics")
    def short_metrics(self, obj):
        keys = ("log_loss", "brier", "accuracy", "auc")
        return ", ".join(f"{k} {obj.metrics[k]:.3f}" for k in keys if isinstance(obj.metrics.get(k), int | float))

    @admin.action(description="Promote the selected challenger to champion")
    def promote_selected(self, request, queryset):
        from ai import registry

        if queryset.count() != 1:
            self.message_user(request, "select exactly one challenger to promote", messages.ERROR)
            return
        try:
            mv = registry.promote(queryset.get().pk, reason=f"promoted in the admin by {request.user.username}")
        except registry.RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{mv} now serves", messages.SUCCESS)

    @admin.action(description="Retire the selected models")
    def retire_selected(self, request, queryset):
        from ai import registry

        done, errors = 0, []
        for mv in queryset:
            try:
                registry.retire(mv.pk, reason=f"retired in the admin by {request.user.username}")
                done += 1
            except registry.RegistryError as exc:
                errors.append(str(exc))
        if done:
            self.message_user(request, f"{done} model(s) retired", messages.SUCCESS)
        for e in errors:
            self.message_user(request, e, messages.ERROR)


@admin.register(EvaluationReport)
class EvaluationReportAdmin(admin.ModelAdmin):
    """Runs of manage.py evaluate_models: the verdict and a link to the report folder."""

    list_display = ["created_at", "headline", "folder_link"]
    readonly_fields = ["created_at", "path", "summary", "params"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="verdict")
    def headline(self, obj):
        return (obj.summary.get("verdict") or {}).get("headline", "")

    @admin.display(description="report folder")
    def folder_link(self, obj):
        from pathlib import Path

        from django.utils.html import format_html

        return format_html('<a href="{}">{}</a>', Path(obj.path).as_uri() if obj.path.startswith("/") else obj.path,
                           obj.path)


@admin.register(MetaStrategyState)
class MetaStrategyStateAdmin(ReadOnlyAdmin):
    """The meta-strategy agent's learned state: read-only (it learns from closed positions)."""

    list_display = ["pk", "rewards_applied", "updated_at"]
    readonly_fields = ["rewards_applied", "updated_at", "bandit"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MetaStrategyDecision)
class MetaStrategyDecisionAdmin(ReadOnlyAdmin):
    """Which profile traded which symbol, why, and what it earned: read-only, findable by trace id."""

    list_display = ["created_at", "symbol", "regime", "group", "profile", "fallback", "reward", "trace_id"]
    list_filter = ["profile", "regime", "fallback", "trade"]
    search_fields = ["symbol", "trace_id", "position_id"]
    readonly_fields = [f.name for f in MetaStrategyDecision._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False
