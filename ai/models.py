from django.db import models


class UniverseSnapshot(models.Model):
    """One run of the universe scanner: the ranking, what was filtered out and why."""

    created_at = models.DateTimeField(db_index=True)
    exchange = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=3)
    params = models.JSONField()
    ranked = models.JSONField(help_text="ranked symbols with their measures, best first")
    excluded = models.JSONField(help_text="symbols a filter dropped, with the reason")
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        top = ", ".join(r["symbol"] for r in self.ranked[:3])
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.exchange}: {top}"


class ModelStatus(models.TextChoices):
    CHAMPION = "champion", "champion (serves)"
    CHALLENGER = "challenger", "challenger (evaluated, not serving)"
    RETIRED = "retired", "retired"


class ModelType(models.TextChoices):
    XGBOOST = "xgboost", "XGBoost"
    LIGHTGBM = "lightgbm", "LightGBM"
    NHITS = "nhits", "N-HiTS"
    PATCHTST = "patchtst", "PatchTST"


class ModelVersion(models.Model):
    """One trained forecaster. Only champions serve; at most one champion per model type."""

    model_type = models.CharField(max_length=16, choices=ModelType.choices)
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=ModelStatus.choices, default=ModelStatus.CHALLENGER)
    created_at = models.DateTimeField()
    promoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    status_reason = models.CharField(max_length=500, blank=True, default="")
    training_start = models.DateTimeField()
    training_end = models.DateTimeField()
    feature_version = models.CharField(max_length=32)
    feature_hash = models.CharField(max_length=64)
    metrics = models.JSONField(default=dict)
    artifact_path = models.CharField(max_length=500)
    artifact_checksum = models.CharField(max_length=64)
    trace_id = models.CharField(max_length=64, blank=True, default="")
    drift_reference = models.JSONField(
        default=dict, blank=True,
        help_text="the training window's feature and validation-prediction histograms the drift score compares "
                  "against (ai/evaluation/drift.py)")
    # A champion whose realized outcomes collapsed: it still predicts (so its recovery can be
    # seen) but has no say in the ensemble's vote until released.
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["model_type", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["model_type", "version"], name="model_version_unique"),
            models.UniqueConstraint(fields=["model_type"], condition=models.Q(status="champion"),
                                    name="one_champion_per_model_type"),
        ]

    def __str__(self) -> str:
        return f"{self.model_type} v{self.version} ({self.status})"


class RlExperience(models.Model):
    """One closed position, as experience for the RL sizing agent (filled from position.closed)."""

    symbol = models.CharField(max_length=40, db_index=True)
    position_id = models.CharField(max_length=128, unique=True)
    side = models.CharField(max_length=8)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(db_index=True)
    pnl = models.DecimalField(max_digits=28, decimal_places=10, help_text="pnl_usd of position.closed")
    fees = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    notional_usd = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    features = models.JSONField(default=dict, help_text="what the sizer saw at entry (see ai.sizing.services)")
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-closed_at"]

    def __str__(self) -> str:
        return f"{self.symbol} {self.position_id}: {self.pnl}"


class EvaluationReport(models.Model):
    """One run of `manage.py evaluate_models`: where its report folder is and its headline figures."""

    created_at = models.DateTimeField(db_index=True)
    path = models.CharField(max_length=500, help_text="folder holding report.json and the plots")
    summary = models.JSONField(default=dict, help_text="verdict and headline figures")
    params = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"evaluation {self.created_at:%Y-%m-%d %H:%M} ({self.path})"


class MetaStrategyState(models.Model):
    """The meta-strategy agent's learned state (ai/meta): one row, the bandit's JSON and how many
    closed positions have taught it. Updated under a row lock, one reward at a time."""

    bandit = models.JSONField(help_text="ContextualBandit.to_dict(): settings and (context, profile) statistics")
    rewards_applied = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"meta-strategy state ({self.rewards_applied} rewards, {self.updated_at:%Y-%m-%d %H:%M})"


class MetaStrategyDecision(models.Model):
    """The profile the meta-strategy chose for one symbol in one inference pass, and, once the
    position it opened has closed, the reward it earned (net PnL / entry notional)."""

    created_at = models.DateTimeField(db_index=True)
    symbol = models.CharField(max_length=40, db_index=True)
    timeframe = models.CharField(max_length=3)
    regime = models.CharField(max_length=16)
    group = models.CharField(max_length=40, help_text="the symbol's sector ('other' when it has none)")
    profile = models.CharField(max_length=32)
    fallback = models.BooleanField(help_text="the fixed default profile, because the agent was untrained or unsure")
    reason = models.CharField(max_length=500)
    ensemble_threshold = models.FloatField()
    horizon_bars = models.PositiveIntegerField()
    execution_strategy = models.CharField(max_length=8)
    trade = models.BooleanField()
    trace_id = models.CharField(max_length=64, db_index=True)
    position_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    reward = models.FloatField(null=True, blank=True)
    pnl_usd = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    notional_usd = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    rewarded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["trace_id", "symbol"], name="meta_decision_one_per_pass_and_symbol"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.regime}/{self.group}: {self.profile}{' (fallback)' if self.fallback else ''}"
