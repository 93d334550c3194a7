"""The learning manager's records: predictions and their outcomes, drift checks, retraining jobs."""
from django.core.validators import MinValueValidator
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


# --- the health graph, self-healing, alert rules and notifications (analytics-os service) ---

class HealthTransition(models.Model):
    """A component of the health graph changed status (the graph itself lives in Redis)."""

    component = models.CharField(max_length=NAME_MAX, db_index=True,
                                 help_text="service:<name>, queue:<name>, module:<service>/<module>, dependency:<name>")
    previous_status = models.CharField(max_length=12, blank=True, default="", help_text="empty: first seen")
    status = models.CharField(max_length=12)
    reasons = models.JSONField(default=list, blank=True)
    at = models.DateTimeField(db_index=True)
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.component}: {self.previous_status or '-'} -> {self.status}"


class HealingKind(models.TextChoices):
    RESTART_WORKER = "restart_worker", "restart a dead or stuck worker"
    RESTART_POOL = "restart_pool", "restart a worker's pool (memory)"
    QUARANTINE_MODEL = "quarantine_model", "quarantine a failing model"
    RELEASE_MODEL = "release_model", "release a recovered model"
    REDUCE_ONLY = "reduce_only", "REDUCE_ONLY while execution is unhealthy"
    RESTORE_MODE = "restore_mode", "restore the mode after execution recovered"
    GIVE_UP = "give_up", "stop restarting a worker that keeps failing"
    RESUME = "resume", "an operator resumed self-healing of a worker"
    RULE = "rule", "an alert rule's action"


class HealingOutcome(models.TextChoices):
    DONE = "done", "done"
    FAILED = "failed", "failed"
    SKIPPED = "skipped", "skipped (cooldown, shadow or nothing to do)"


class HealingAction(models.Model):
    """One decision of self-healing or of an alert rule: what triggered it, what was done."""

    kind = models.CharField(max_length=20, choices=HealingKind.choices)
    target = models.CharField(max_length=NAME_MAX, help_text="a process, worker, model type or the system mode")
    trigger = models.CharField(max_length=TEXT_MAX, help_text="what was seen")
    details = models.JSONField(default=dict, blank=True, help_text="the facts behind the decision")
    outcome = models.CharField(max_length=8, choices=HealingOutcome.choices)
    result = models.CharField(max_length=TEXT_MAX, blank=True, default="", help_text="what happened, or why not")
    rule = models.ForeignKey("AlertRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="actions")
    shadow = models.BooleanField(default=False, help_text="decided but not done (ANALYTICS_OS_SERVICE_SHADOW)")
    created_at = models.DateTimeField(db_index=True)
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["kind", "target", "created_at"], name="healing_by_target")]

    def __str__(self) -> str:
        return f"{self.kind} {self.target}: {self.outcome}"


class AlertRule(models.Model):
    """An alert rule as data: when `metric` compared with `threshold` holds, do `action`.

    The metrics and actions a rule may name are catalogued in analytics/alerting/catalog.py;
    anything else is refused on save with the field named."""

    name = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    metric = models.CharField(max_length=64)
    comparison = models.CharField(max_length=2, default="gt", help_text="gt, ge, lt or le")
    threshold = models.FloatField()
    action = models.CharField(max_length=32)
    severity = models.CharField(max_length=8, default="warning", help_text="info, warning or critical")
    enabled = models.BooleanField(default=True)
    # At least two monitor passes: a rule acting on every pass (an emergency stop re-sent every 5 s)
    # is a loop, not a policy.
    cooldown_seconds = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(10, "cooldown_seconds must be at least 10 (two monitor passes)")],
        help_text="between two actions of this rule on one subject (at least 10)")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.metric} {self.comparison} {self.threshold:g} -> {self.action}"

    def clean(self):
        from django.core.exceptions import ValidationError

        from analytics.alerting.catalog import RuleError, validate_rule

        try:
            validate_rule(metric=self.metric, comparison=self.comparison, threshold=self.threshold,
                          action=self.action, severity=self.severity)
        except RuleError as exc:
            raise ValidationError({exc.field: exc.message}) from None


class AlertFiring(models.Model):
    """A rule that held for a subject (a worker, a model, the account), and what it did."""

    # A deleted rule keeps its history: the firing remembers the rule's name.
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="firings")
    rule_name = models.CharField(max_length=64, blank=True, default="")
    subject = models.CharField(max_length=NAME_MAX, help_text="what the metric was measured on")
    value = models.FloatField()
    threshold = models.FloatField()
    fired_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="when the condition stopped holding")
    action_outcome = models.CharField(max_length=8, choices=HealingOutcome.choices)
    action_result = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-fired_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.rule_name} on {self.subject}: {self.value:g}"

    def save(self, *args, **kwargs):
        if self.rule is not None and not self.rule_name:
            self.rule_name = self.rule.name
        super().save(*args, **kwargs)


class NotificationChannel(models.Model):
    """An operator channel: an Apprise URL (Telegram, Discord, Slack, e-mail, JSON webhook...).

    The URL is a secret (it holds tokens): it comes from an environment variable named here, or
    is stored encrypted; it is never shown back."""

    name = models.CharField(max_length=64, unique=True)
    url_env = models.CharField(max_length=128, blank=True, default="",
                               help_text="name of the environment variable that holds the Apprise URL")
    url_encrypted = models.TextField(blank=True, default="", help_text="the Apprise URL, encrypted at rest")
    min_severity = models.CharField(max_length=8, default="warning", help_text="info, warning or critical")
    enabled = models.BooleanField(default=True)
    max_per_minute = models.PositiveIntegerField(default=6, help_text="rate limit: more waits and is batched")
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed (retries exhausted)"


class NotificationDelivery(models.Model):
    """One alert to one channel; written before sending, so a failure never loses it."""

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(help_text="the system.alert event it carries")
    severity = models.CharField(max_length=8)
    title = models.CharField(max_length=TEXT_MAX)
    body = models.TextField()
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    last_error = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["channel", "event_id"], name="one_delivery_per_channel_event")]

    def __str__(self) -> str:
        return f"{self.channel.name}: {self.title} ({self.status})"


# --- orchestration (analytics/orchestration) ---
class HfosDecision(models.Model):
    """One pass of the orchestrator: the directives every layer proposed, and what stood.

    Its trace id is the one every event it published (portfolio.balance, profit.amplification)
    carries, and so every intent and order those caused."""

    trigger = models.CharField(max_length=NAME_MAX, help_text="beat, position.opened, manual ...")
    hierarchy = models.JSONField(default=list, help_text="the priority order it decided by, highest first")
    accepted_count = models.PositiveIntegerField(default=0)
    overruled_count = models.PositiveIntegerField(default=0)
    portfolio = models.JSONField(default=dict, blank=True,
                                 help_text="the balancer's view: equity, exposures per symbol and sector, caps, "
                                           "breaches")
    skipped = models.CharField(max_length=TEXT_MAX, blank=True, default="",
                               help_text="why nothing was decided (state unknown or stale), empty otherwise")
    shadow = models.BooleanField(default=False, help_text="decided but not carried out (ANALYTICS_OS_SERVICE_SHADOW)")
    created_at = models.DateTimeField(db_index=True, default=timezone.now)
    trace_id = models.CharField(max_length=64, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"HFOS {self.trigger} {self.created_at:%Y-%m-%d %H:%M:%S}: {self.accepted_count} accepted, " \
               f"{self.overruled_count} overruled"


class DirectiveOutcome(models.TextChoices):
    ACCEPTED = "accepted", "accepted"
    OVERRULED = "overruled", "overruled"


class HfosDirective(models.Model):
    """One directive of one layer in one decision, accepted or overruled (with what beat it, and why)."""

    decision = models.ForeignKey(HfosDecision, on_delete=models.CASCADE, related_name="directives")
    layer = models.CharField(max_length=16)
    kind = models.CharField(max_length=24)
    symbol = models.CharField(max_length=NAME_MAX, help_text="'*' for the whole system")
    amount_usd = models.DecimalField(max_digits=24, decimal_places=2, default=0)
    reason = models.CharField(max_length=TEXT_MAX)
    outcome = models.CharField(max_length=10, choices=DirectiveOutcome.choices)
    overruled_by = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    why = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    position_id = models.PositiveBigIntegerField(null=True, blank=True)
    event_id = models.UUIDField(null=True, blank=True, help_text="the event that carried it out, when one did")
    created_at = models.DateTimeField(db_index=True, default=timezone.now)

    class Meta:
        ordering = ["decision_id", "pk"]
        indexes = [models.Index(fields=["layer", "kind", "position_id", "created_at"], name="hfos_directive_lookup")]

    def __str__(self) -> str:
        return f"{self.layer}: {self.kind} {self.symbol} [{self.outcome}]"


class PositionAssessment(models.Model):
    """Position intelligence: the latest class of one open position, with its score and reasons."""

    position_id = models.PositiveBigIntegerField(unique=True)
    symbol = models.CharField(max_length=NAME_MAX, db_index=True)
    label = models.CharField(max_length=10)
    score = models.FloatField()
    pnl_pct = models.DecimalField(max_digits=12, decimal_places=4)
    reasons = models.JSONField(default=list)
    atr_at_entry = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True,
                                       help_text="the ATR when the position was first assessed (volatility spikes are "
                                                 "measured against it)")
    open = models.BooleanField(default=True, db_index=True)
    assessed_at = models.DateTimeField(db_index=True)
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-assessed_at", "-pk"]

    def __str__(self) -> str:
        return f"position {self.position_id} {self.symbol}: {self.label} ({self.score:+.2f})"
