"""Risk state: the versioned policy, the system mode and its audit trail, every risk decision,
the UTC day's starting equity and the governor's state.

The policy's values live in one JSON document per version, validated by the pure domain core
(risk/domain/policy.py owns the fields, their defaults and their checks); rows are never
edited, an edit is a new version (risk/services/policy.py).
"""
from __future__ import annotations

from decimal import Decimal

from django.db import models

from core.enums import Mode, choices
from core.limits import NAME_MAX, TEXT_MAX

MONEY_DIGITS, MONEY_DECIMALS = 38, 12


class RiskPolicy(models.Model):
    """One version of the risk policy. The newest version is in force."""

    version = models.PositiveIntegerField(unique=True)
    values = models.JSONField(help_text="every policy setting (risk/domain/policy.py), Decimals as strings")
    changed_fields = models.JSONField(default=list)
    created_by = models.CharField(max_length=150)
    reason = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-version"]
        verbose_name_plural = "risk policies"

    def __str__(self) -> str:
        return f"policy v{self.version} by {self.created_by}"


MODE_CHOICES = choices(Mode, {
    Mode.NORMAL: "NORMAL (trading)",
    Mode.SHADOW: "SHADOW (decisions recorded, no orders)",
    Mode.REDUCE_ONLY: "REDUCE_ONLY (only orders that shrink positions)",
    Mode.HALTED: "HALTED (emergency stop)",
})


class ModeChange(models.Model):
    """Audit row of every system mode change: who, when, why. The newest row is the mode."""

    previous_mode = models.CharField(max_length=12, choices=MODE_CHOICES)
    mode = models.CharField(max_length=12, choices=MODE_CHOICES)
    reason = models.CharField(max_length=TEXT_MAX)
    changed_by = models.CharField(max_length=150)
    by_operator = models.BooleanField(help_text="True: a person; False: the safety governor or the system")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.previous_mode} -> {self.mode} by {self.changed_by}"


class RiskDecision(models.Model):
    """Every verdict of the risk validator, with the policy version and the snapshot it used."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    trace_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    intent_key = models.CharField(max_length=NAME_MAX, blank=True, default="", db_index=True)
    source = models.CharField(max_length=32, help_text="signal, manual, portfolio_balance, profit_amplification, rpc")
    symbol = models.CharField(max_length=40)
    side = models.CharField(max_length=4)
    size_usd = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_DECIMALS)
    leverage = models.PositiveSmallIntegerField()
    reduce_only = models.BooleanField(default=False)
    confidence = models.DecimalField(max_digits=8, decimal_places=6, null=True, blank=True)
    approved = models.BooleanField()
    reasons = models.JSONField(default=list, help_text="[{rule, message}] of every failed rule")
    max_allowed_size_usd = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_DECIMALS,
                                               default=Decimal("0"))
    policy_version = models.PositiveIntegerField()
    mode = models.CharField(max_length=12, choices=MODE_CHOICES)
    snapshot = models.JSONField(default=dict, help_text="equity, exposure, reference price and age seen")

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        verdict = "approved" if self.approved else "rejected"
        return f"{self.symbol} {self.side} {self.size_usd:.2f} USD {verdict} (policy v{self.policy_version})"


class DailyEquity(models.Model):
    """The account's equity at the first look of each UTC day: the base of daily drawdown."""

    day = models.DateField(unique=True)
    start_equity_usd = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_DECIMALS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day"]
        verbose_name_plural = "daily equity"

    def __str__(self) -> str:
        return f"{self.day}: {self.start_equity_usd:.2f} USD"


class GovernorState(models.Model):
    """The safety governor's memory (one row, pk=1)."""

    entries_blocked_until = models.DateTimeField(null=True, blank=True,
                                                 help_text="no new entries before this (daily drawdown limit)")
    block_reason = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    last_emergency_at = models.DateTimeField(null=True, blank=True)
    last_emergency_reason = models.CharField(max_length=TEXT_MAX, blank=True, default="")
    flatten_pending = models.BooleanField(default=False, help_text="an emergency stop's cancel/flatten is not done")
    flatten_event_id = models.CharField(max_length=64, blank=True, default="")
    flatten_positions = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"governor (entries blocked until {self.entries_blocked_until})"
