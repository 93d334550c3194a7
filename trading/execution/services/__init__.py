"""Execution services, one module per job:

intents    create an intent, validate and start it, advance it (slices, limits, slippage cap)
sources    typed translators from events and positions to intents
emergency  the emergency flatten (cancel everything, close every position)
sweep      the beat's fallback for intents whose inline processing was lost

This package re-exports each module's public functions, so a caller can name the job's module
or the package.
"""
from trading.execution.services.emergency import emergency_flatten, emergency_flatten_pending
from trading.execution.services.intents import IntentError, intent_advance, intent_create, intent_process
from trading.execution.services.sources import (
    OutdatedEvent,
    exit_intent,
    intent_from_request,
    intent_from_rl_decision,
    intents_from_portfolio_balance,
    profit_amplification_apply,
)
from trading.execution.services.sweep import sweep

__all__ = [
    "IntentError", "OutdatedEvent", "emergency_flatten", "emergency_flatten_pending", "exit_intent",
    "intent_advance", "intent_create", "intent_from_request", "intent_from_rl_decision", "intent_process",
    "intents_from_portfolio_balance", "profit_amplification_apply", "sweep",
]
