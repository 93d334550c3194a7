"""The health graph and self-healing in the admin: status transitions and healing actions (read-only,
kept as a record), the latest graph on a page of its own, and the operator's way back after
self-healing gave up on a worker ("Resume self-healing of this worker" on a GIVE_UP row)."""
from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from analytics.models import HealingAction, HealingKind, HealthTransition
from qtweb.admin import ReadOnlyAdmin
from qtweb.queues import Queue

# Both changelists carry a link to the latest graph.
CHANGE_LIST_TEMPLATE = "admin/analytics/health_change_list.html"


class HealthRecordAdmin(ReadOnlyAdmin):
    """What the monitor and self-healing recorded: an audit trail, never edited or deleted by hand."""

    change_list_template = CHANGE_LIST_TEMPLATE

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(HealthTransition)
class HealthTransitionAdmin(HealthRecordAdmin):
    list_display = ["at", "component", "previous_status", "status", "short_reasons"]
    list_filter = ["status", "previous_status"]
    search_fields = ["component", "=trace_id"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in HealthTransition._meta.fields]

    @admin.display(description="reasons")
    def short_reasons(self, obj):
        return "; ".join(str(r) for r in obj.reasons or [])[:200]

    def get_urls(self):
        custom = [path("graph/", self.admin_site.admin_view(self.graph_view), name="analytics_health_graph")]
        return custom + super().get_urls()

    def graph_view(self, request):
        """The latest health graph as the monitor stored it (built now when it has not stored one)."""
        from analytics.api.health import latest_graph

        if not self.has_view_permission(request):
            raise PermissionDenied
        g = latest_graph()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Latest health graph",
            "graph": g,
            "raw": json.dumps(g, indent=2, sort_keys=True, default=str),
        }
        return TemplateResponse(request, "admin/analytics/health_graph.html", context)


class ResumeForm(forms.Form):
    reason = forms.CharField(max_length=300, required=True,
                             help_text="what was fixed, so self-healing may restart this worker again")


@admin.register(HealingAction)
class HealingActionAdmin(HealthRecordAdmin):
    list_display = ["created_at", "kind", "target", "outcome", "shadow", "short_trigger", "short_result", "rule"]
    list_filter = ["kind", "outcome", "shadow", "target"]
    search_fields = ["target", "trigger", "result", "=trace_id"]
    date_hierarchy = "created_at"
    list_select_related = ["rule"]
    readonly_fields = [f.name for f in HealingAction._meta.fields]
    actions = ["resume_self_healing"]

    @admin.display(description="trigger")
    def short_trigger(self, obj):
        return obj.trigger[:160]

    @admin.display(description="result")
    def short_result(self, obj):
        return obj.result[:160]

    def has_resume_permission(self, request):
        # Starting a worker again is an operator's decision, as the API's POST is (IsAdminUser).
        return request.user.is_active and request.user.is_staff

    @admin.action(description="Resume self-healing of this worker", permissions=["resume"])
    def resume_self_healing(self, request, queryset):
        """On GIVE_UP rows: asks for a reason, then resumes each selected worker's queue
        (analytics.healing.service.resume); other rows, and queues already resumed, are reported."""
        from analytics.healing import service

        give_ups = list(queryset.filter(kind=HealingKind.GIVE_UP))
        if not give_ups:
            self.message_user(request, "select a give_up row: only a worker self-healing gave up on can be resumed",
                              messages.WARNING)
            return None
        form = ResumeForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Resume self-healing",
                "form": form,
                "rows": give_ups,
                "queryset": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/analytics/healing_resume.html", context)
        queues = [q.value for q in Queue]
        for queue in sorted({row.target for row in give_ups}):
            if queue not in queues:
                self.message_user(request, f"{queue}: not a queue (one of {', '.join(queues)})", messages.ERROR)
            elif service.given_up(queue) is None:
                self.message_user(request, f"{queue}: self-healing has not given up on it (already resumed)",
                                  messages.WARNING)
            else:
                action = service.resume(queue, by=request.user.get_username(), reason=form.cleaned_data["reason"])
                self.message_user(request, f"{queue}: self-healing resumed; {action.result}", messages.SUCCESS)
        return None
