"""The learning manager in the admin: jobs (request one with "Add"), drift checks, outcomes."""
from django import forms
from django.contrib import admin, messages

from ai.models import ModelType
from analytics.models import ACTIVE_JOB_STATUSES, DriftCheck, PredictionOutcome, RetrainingJob
from qtweb.admin import ReadOnlyAdmin


class RetrainRequestForm(forms.ModelForm):
    """Adding a job is requesting one: it goes through the learning manager (one per type)."""

    model_type = forms.ChoiceField(choices=ModelType.choices)
    reason = forms.CharField(max_length=300, required=False)

    class Meta:
        model = RetrainingJob
        fields = ["model_type", "reason"]

    def clean(self):
        from analytics.learning import jobs

        data = super().clean()
        active = RetrainingJob.objects.filter(model_type=data.get("model_type"),
                                              status__in=ACTIVE_JOB_STATUSES).first()
        if active is not None:
            raise forms.ValidationError(str(jobs.JobAlreadyActive(active)))
        return data


@admin.register(RetrainingJob)
class RetrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "model_type", "trigger", "status", "stage", "decision", "champion_score",
                    "challenger_score", "requested_at", "finished_at", "attempts", "error"]
    list_filter = ["model_type", "status", "trigger", "decision"]
    readonly_fields = [f.name for f in RetrainingJob._meta.fields]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = RetrainRequestForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        return ["model_type", "reason"] if obj is None else super().get_fields(request, obj)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        from analytics.learning import jobs

        try:
            job = jobs.request_retraining(model_type=form.cleaned_data["model_type"], trigger="manual",
                                          reason=form.cleaned_data.get("reason") or "requested in the admin",
                                          requested_by=request.user.username)
        except jobs.JobAlreadyActive as exc:  # another request won the race since the form was checked
            obj.pk = exc.job.pk
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk = job.pk
        self.message_user(request, f"retraining job {job.pk} queued for {job.model_type}", messages.SUCCESS)


class RecordAdmin(ReadOnlyAdmin):
    """What the learning manager recorded: read, never deleted by hand (it prunes itself after
    30 days)."""

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DriftCheck)
class DriftCheckAdmin(RecordAdmin):
    list_display = ["checked_at", "model_type", "model_version", "drift_score", "threshold", "detected", "parts",
                    "action"]
    list_filter = ["model_type", "detected"]
    readonly_fields = [f.name for f in DriftCheck._meta.fields]


@admin.register(PredictionOutcome)
class PredictionOutcomeAdmin(RecordAdmin):
    list_display = ["bar_open_time", "model_type", "model_version", "symbol", "prob_up", "went_up",
                    "forward_log_return", "position_id", "position_pnl_usd", "unresolvable"]
    list_filter = ["model_type", "went_up"]
    search_fields = ["symbol", "trace_id", "position_id"]
    readonly_fields = [f.name for f in PredictionOutcome._meta.fields]
