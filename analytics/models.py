"""The learning manager's records: predictions and their outcomes, drift checks, retraining jobs."""
from django.db import models
from django.utils import timezone

from core.limits import NAME_MAX, TEXT_MAX


class PredictionOutcome(models.Model):
    """One published `model.prediction`, joined to what the market did over its horizon and, when
    the signal it voted in was traded, to the `position.closed` that followed (same trace id
    and symbol)."""

    event_id = models.UUIDField(unique=True, help_text="the model.prediction event")
    trace_id = models.CharField(max_length=64, db_index=True)
    model_type = models.CharField(max_length=16)
    model_version = models.CharField(max_length=NAME_MAX, help_text="as published ('?' when unknown)")
    symbol = models.CharField(max_length=40)
    timeframe = models.CharField(max_length=3)
    bar_open_time = models.DateTimeField(help_text="the bar the prediction was made at")
    horizon_bars = models.PositiveSmallIntegerField()
    due_at = models.DateTimeField(help_text="when the horizon's last bar has closed")
    prob_up = models.FloatField()
    recorded_at = models.DateTimeField(default=timezone.now, help_text="when the store received it (wall clock)")
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="when its outcome was written (wall clock)")
    went_up = models.BooleanField(null=True, blank=True, help_text="close after the horizon > close at the bar")
    forward_log_return = models.FloatField(null=True, blank=True)
    unresolvable = models.CharField(max_length=TEXT_MAX, blank=True, default="",
                                    help_text="why no honest outcome exists (a gap in the stored bars)")
    position_id = models.CharField(max_length=NAME_MAX, blank=True, default="")
    position_pnl_usd = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    position_exit_reason = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["-bar_open_time"]
        indexes = [
            models.Index(fields=["resolved_at", "due_at"], name="outcome_pending"),
            models.Index(fields=["model_type", "model_version", "bar_open_time"], name="outcome_by_model"),
            models.Index(fields=["trace_id", "symbol"], name="outcome_by_trace"),
        ]

    def __str__(self) -> str:
        return f"{self.model_type} v{self.model_version} {self.symbol} @ {self.bar_open_time:%Y-%m-%d %H:%M}"


class DriftCheck(models.Model):
    """One drift score of one model version, with its parts (ai/evaluation/drift.py)."""

    model_version = models.ForeignKey("ai.ModelVersion", on_delete=models.CASCADE, related_name="drift_checks")
    model_type = models.CharField(max_length=16)
    checked_at = models.DateTimeField(db_index=True)
    drift_score = models.FloatField(null=True, blank=True, help_text="empty: no part could be computed (unknown)")
    threshold = models.FloatField()
    detected = models.BooleanField()
    parts = models.JSONField(default=dict, help_text="feature_psi, prediction_psi, performance_decay")
    top_features = models.JSONField(default=dict, help_text="the features whose distribution moved most (PSI)")
    missing = models.JSONField(default=dict, help_text="parts that could not be computed, and why")
    n_feature_rows = models.PositiveIntegerField(default=0)
    n_predictions = models.PositiveIntegerField(default=0)
    n_outcomes = models.PositiveIntegerField(default=0)
    action = models.CharField(max_length=TEXT_MAX, blank=True, default="",
                              help_text="what followed: a retraining job, or why none was started")
    job = models.ForeignKey("RetrainingJob", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="drift_checks")
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-checked_at"]

    def __str__(self) -> str:
        if self.drift_score is None:
            return f"{self.model_type} drift unknown"
        return f"{self.model_type} drift {self.drift_score:.3f} ({'DETECTED' if self.detected else 'ok'})"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded (a decision was made)"
    FAILED = "failed", "failed (the champion keeps serving)"


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobTrigger(models.TextChoices):
    DRIFT = "drift", "drift detected"
    SCHEDULED = "scheduled", "scheduled"
    MANUAL = "manual", "requested by an operator"


class JobDecision(models.TextChoices):
    PROMOTED = "promoted", "challenger promoted"
    REJECTED = "rejected", "challenger rejected"


class RetrainingJob(models.Model):
    """Train a challenger of one model type and judge it against the champion.

    At most one job per model type is queued or running (a database constraint): a storm of
    drift checks, schedules and operator requests finds the active job instead of queueing more."""

    model_type = models.CharField(max_length=16)
    trigger = models.CharField(max_length=12, choices=JobTrigger.choices)
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED)
    requested_at = models.DateTimeField()
    requested_by = models.CharField(max_length=150, blank=True, default="")
    reason = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True,
                                        help_text="last sign of life of the worker running it")
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=64, blank=True, default="")
    champion = models.ForeignKey("ai.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", help_text="the champion it was judged against")
    challenger = models.ForeignKey("ai.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    champion_score = models.FloatField(null=True, blank=True)
    challenger_score = models.FloatField(null=True, blank=True)
    decision = models.CharField(max_length=12, choices=JobDecision.choices, blank=True, default="")
    result = models.JSONField(default=dict, blank=True, help_text="both models' figures on the judging window")
    error = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(fields=["model_type"], condition=models.Q(status__in=["queued", "running"]),
                                    name="one_active_retraining_job_per_type"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk}: retrain {self.model_type} ({self.status})"
