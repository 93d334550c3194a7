"""Admin for the risk layer.

Policy versions and mode changes are an audit trail: rows are never edited or deleted. "Add"
on the policy is the editor (every field prefilled with the version in force; saving goes
through policy_update: a new version + `policy.updated`); "Add" on mode changes changes the
mode (mode_set, by an operator); the EMERGENCY STOP page halts the system (emergency_stop).
Decisions, daily equity and the governor's state are read-only.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from risk.domain.modes import ModeTransitionError
from risk.domain.policy import POLICY_FIELDS, PolicyError
from risk.forms import EmergencyStopForm, ModeChangeForm, PolicyEditForm
from risk.models import DailyEquity, GovernorState, ModeChange, RiskDecision, RiskPolicy


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _copy_row(target, row) -> None:
    """Make the admin's unsaved instance stand for the row a service created (for the log entry
    and the redirect after "add")."""
    for f in row._meta.concrete_fields:
        setattr(target, f.attname, getattr(row, f.attname))
    target._state.adding = False
    target._state.db = row._state.db


@admin.register(RiskPolicy)
class RiskPolicyAdmin(admin.ModelAdmin):
    """Versions are read-only; "Add risk policy" edits the policy in force as a new version."""

    list_display = ["version", "created_at", "created_by", "changed", "reason"]
    search_fields = ["created_by", "reason", "=trace_id"]
    form = PolicyEditForm

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="changed fields")
    def changed(self, obj):
        return ", ".join(obj.changed_fields) or "(first version)"

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["reason"]}),
                    ("Policy (prefilled with the version in force)", {"fields": list(POLICY_FIELDS)})]
        return [(None, {"fields": ["version", "created_at", "created_by", "reason", "changed_fields", "trace_id",
                                   "values"]})]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["version", "created_at", "created_by", "reason", "changed_fields", "trace_id", "values"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:  # viewing a stored version: the plain model form, every field read-only
            kwargs["form"] = admin.ModelAdmin.form
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request, obj, form, change):
        from risk.services.policy import policy_update

        row = policy_update(changes=form.changes, updated_by=request.user.get_username(),
                            reason=form.cleaned_data["reason"])
        _copy_row(obj, row)

    def save_related(self, request, form, formsets, change):
        pass  # nothing related; the form has no model fields to save

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"policy v{obj.version} is in force (changed: {', '.join(obj.changed_fields)})",
                          messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:risk_riskpolicy_changelist"))

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except PolicyError as exc:  # another edit landed between the form's check and the save
            self.message_user(request, f"not saved: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


@admin.register(ModeChange)
class ModeChangeAdmin(admin.ModelAdmin):
    """The mode's audit trail. "Add" changes the mode; the EMERGENCY STOP page halts."""

    list_display = ["created_at", "previous_mode", "mode", "changed_by", "by_operator", "reason"]
    list_filter = ["mode", "by_operator"]
    search_fields = ["changed_by", "reason", "=trace_id"]
    form = ModeChangeForm
    change_list_template = "admin/risk/modechange/change_list.html"

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["mode", "reason"]
        return ["created_at", "previous_mode", "mode", "reason", "changed_by", "by_operator", "trace_id"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return self.get_fields(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:  # viewing a stored change: the plain model form, every field read-only
            kwargs["form"] = admin.ModelAdmin.form
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request, obj, form, change):
        from risk.services.modes import mode_set

        row = mode_set(target=form.cleaned_data["mode"], reason=form.cleaned_data["reason"],
                       changed_by=request.user.get_username(), by_operator=True)
        _copy_row(obj, row)

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"the system is now {obj.mode} (was {obj.previous_mode})", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:risk_modechange_changelist"))

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ModeTransitionError as exc:  # the mode moved between the form's check and the save
            self.message_user(request, f"not changed: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def changelist_view(self, request, extra_context=None):
        from risk.services.modes import mode_get

        extra_context = {**(extra_context or {}), "current_mode": mode_get().value,
                         "can_stop": self.has_add_permission(request)}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        custom = [path("emergency-stop/", self.admin_site.admin_view(self.emergency_stop_view),
                       name="risk_modechange_emergency_stop")]
        return custom + super().get_urls()

    def emergency_stop_view(self, request):
        """A reason and a button: HALT now (emergency_stop by this operator)."""
        from risk.services.governor import emergency_stop
        from risk.services.modes import mode_get

        if not self.has_add_permission(request):
            raise PermissionDenied
        form = EmergencyStopForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                stopped = emergency_stop(reason=form.cleaned_data["reason"],
                                         triggered_by=request.user.get_username(), by_operator=True,
                                         flatten=form.flatten_value())
            except ModeTransitionError as exc:
                form.add_error(None, str(exc))
            else:
                if stopped:
                    self.message_user(request, "EMERGENCY STOP: the system is HALTED; open orders are being "
                                               "cancelled (and positions flattened as requested)", messages.WARNING)
                else:
                    self.message_user(request, "the system was already HALTED: open orders are cancelled and "
                                               "positions flattened again", messages.INFO)
                return HttpResponseRedirect(reverse("admin:risk_modechange_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "EMERGENCY STOP",
            "form": form,
            "current_mode": mode_get().value,
        }
        return TemplateResponse(request, "admin/risk/emergency_stop.html", context)


@admin.register(RiskDecision)
class RiskDecisionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "symbol", "side", "size_usd", "leverage", "approved", "source", "mode",
                    "policy_version", "first_reason"]
    list_filter = ["approved", "source", "mode", "side"]
    search_fields = ["=trace_id", "=intent_key", "symbol"]
    date_hierarchy = "created_at"

    @admin.display(description="why rejected")
    def first_reason(self, obj):
        return "; ".join(r.get("message", "") for r in obj.reasons)[:160]


@admin.register(DailyEquity)
class DailyEquityAdmin(ReadOnlyAdmin):
    list_display = ["day", "start_equity_usd", "created_at"]


@admin.register(GovernorState)
class GovernorStateAdmin(ReadOnlyAdmin):
    list_display = ["pk", "entries_blocked_until", "block_reason", "last_emergency_at", "last_emergency_reason",
                    "updated_at"]
