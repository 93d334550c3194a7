"""The risk layer's pure core: policy, pre-trade rules, system modes, safety governor.

Plain Python (no Django, no Celery): frozen dataclasses in, frozen dataclasses out, Decimal for
money. The Django services in risk/services/ gather the inputs and act on the results.
"""
from risk.domain.governor import GovernorAction, GovernorInput, assess, consecutive_losses, next_utc_midnight
from risk.domain.modes import Mode, ModeTransitionError, allowed_targets, allows_entries, check_transition, sends_orders
from risk.domain.policy import POLICY_FIELDS, Policy, PolicyError, validate_policy_values
from risk.domain.rules import RULES, Exposure, Intent, OpenOrder, Rejection, Snapshot, Verdict, validate

__all__ = [
    "POLICY_FIELDS", "RULES", "Exposure", "GovernorAction", "GovernorInput", "Intent", "Mode", "ModeTransitionError",
    "OpenOrder", "Policy", "PolicyError", "Rejection", "Snapshot", "Verdict", "allowed_targets", "allows_entries",
    "assess", "check_transition", "consecutive_losses", "next_utc_midnight", "sends_orders", "validate",
    "validate_policy_values",
]
