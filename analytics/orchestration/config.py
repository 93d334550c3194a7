"""The orchestrator's settings, checked once (pure): a mapping of setting names in, one config out.

Django settings call it at start-up so a wrong value (a cap outside (0, 100] %, a hierarchy that
names an unknown layer) stops the process with the variable named, and the services read the same
object at run time.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from analytics.orchestration.amplifier import AmplifierConfig, AmplifierError
from analytics.orchestration.balancer import BalancerCaps, BalancerError
from analytics.orchestration.hfos import HfosError, check_hierarchy
from core.decimals import to_decimal

__all__ = ["ConfigError", "OrchestrationConfig", "orchestration_config"]


class ConfigError(ValueError):
    """A setting the orchestrator refuses; the message names the variable."""


@dataclass(frozen=True)
class OrchestrationConfig:
    pba_enabled: bool
    pal_enabled: bool
    pil_enabled: bool
    caps: BalancerCaps
    amplifier: AmplifierConfig
    hierarchy: tuple[str, ...]
    max_drawdown_for_amplification_pct: Decimal
    state_max_age_seconds: float


def orchestration_config(s: Mapping[str, Any]) -> OrchestrationConfig:
    try:
        caps = BalancerCaps(max_sector_exposure_pct=s["PBA_MAX_SECTOR_EXPOSURE_PCT"],
                            max_positions=s["PBA_MAX_POSITIONS"],
                            max_total_exposure_pct=s["PBA_MAX_TOTAL_EXPOSURE_PCT"],
                            band_pct=s["PBA_REBALANCE_BAND_PCT"])
    except (BalancerError, ValueError) as exc:
        raise ConfigError(f"PBA_*: {exc}") from None
    try:
        amplifier = AmplifierConfig(min_profit_pct=s["PAL_MIN_PROFIT_PCT"], factor=s["PAL_AMPLIFICATION_FACTOR"],
                                    window_seconds=float(s["PAL_WINDOW_SECONDS"]))
    except (AmplifierError, ValueError) as exc:
        raise ConfigError(f"PAL_*: {exc}") from None
    try:
        hierarchy = check_hierarchy(s["HFOS_PRIORITY_HIERARCHY"])
    except HfosError as exc:
        raise ConfigError(f"HFOS_PRIORITY_HIERARCHY: {exc}") from None
    try:
        dd = to_decimal(s["HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT"], "HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not Decimal(0) < dd <= 100:
        raise ConfigError(f"HFOS_MAX_DRAWDOWN_FOR_AMPLIFICATION_PCT must be in (0, 100] %, got {dd}")
    age = float(s["HFOS_STATE_MAX_AGE_SECONDS"])
    if age <= 0:
        raise ConfigError(f"HFOS_STATE_MAX_AGE_SECONDS must be > 0, got {age}")
    if float(s["PBA_REBALANCE_INTERVAL_SECONDS"]) < 10 or float(s["PIL_INTERVAL_SECONDS"]) < 5:
        raise ConfigError("PBA_REBALANCE_INTERVAL_SECONDS must be >= 10 and PIL_INTERVAL_SECONDS >= 5")
    return OrchestrationConfig(pba_enabled=bool(s["PBA_ENABLED"]), pal_enabled=bool(s["PAL_ENABLED"]),
                               pil_enabled=bool(s["PIL_ENABLED"]), caps=caps, amplifier=amplifier,
                               hierarchy=hierarchy, max_drawdown_for_amplification_pct=dd,
                               state_max_age_seconds=age)
