"""Alert rules in the admin: rules editable (refused with the field named when the catalogue does
not know a metric, a comparison, an action, or the threshold is not a number in the metric's
range), firings read-only."""
from django import forms
from django.contrib import admin

from analytics.alerting import catalog
from analytics.models import AlertFiring, AlertRule
from qtweb.admin import ReadOnlyAdmin


def _select(choices: list[tuple[str, str]]) -> forms.Select:
    return forms.Select(choices=choices)


class AlertRuleForm(forms.ModelForm):
    """Drop-downs from the catalogue. They are only a convenience: the fields stay free text so
    a posted value the catalogue does not know reaches the model's clean(), which refuses it
    with the catalogue's reason on that field (the admin, the API and a script say the same)."""

    class Meta:
        model = AlertRule
        fields = ["name", "description", "metric", "comparison", "threshold", "action", "severity", "enabled",
                  "cooldown_seconds"]
        widgets = {
            "metric": _select([(m.name, f"{m.name} ({m.unit}, per {m.subject}): {m.description}")
                               for m in catalog.METRICS.values()]),
            "comparison": _select([(c, f"{c} ({catalog.COMPARISON_SYMBOLS[c]})") for c in catalog.COMPARISONS]),
            "action": _select([(a.name, f"{a.name} (by {a.owner}, on {'/'.join(a.subjects)}): {a.description}")
                               for a in catalog.ACTIONS.values()]),
            "severity": _select([(s, s) for s in catalog.SEVERITIES]),
        }
        error_messages = {"threshold": {"invalid": "threshold must be a finite number (not NaN or infinite)"}}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A stored value the catalogue no longer knows is shown as it is, not silently replaced
        # by the first option when the page is saved.
        for name in ("metric", "comparison", "action", "severity"):
            widget = self.fields[name].widget
            current = self.initial.get(name)
            if current and current not in {value for value, _ in widget.choices}:
                widget.choices = [(current, f"{current} (unknown)"), *widget.choices]


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ["name", "enabled", "metric", "comparison", "threshold", "action", "severity", "cooldown_seconds",
                    "updated_at", "updated_by"]
    list_filter = ["enabled", "action", "severity", "metric"]
    search_fields = ["name", "description"]
    readonly_fields = ["updated_at", "updated_by"]

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user.get_username()
        super().save_model(request, obj, form, change)


@admin.register(AlertFiring)
class AlertFiringAdmin(ReadOnlyAdmin):
    """What the rules did: read, never deleted by hand."""

    list_display = ["fired_at", "rule", "subject", "value", "threshold", "action_outcome", "action_result",
                    "resolved_at"]
    list_filter = ["rule", "action_outcome", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["subject", "trace_id", "action_result"]
    readonly_fields = [f.name for f in AlertFiring._meta.fields]
    list_select_related = ["rule"]

    def has_delete_permission(self, request, obj=None):
        return False
