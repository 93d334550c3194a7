"""Profit amplification (PAL, pure): one position, its PIL class and the room left in, an add or a hold out.

A position gets an add when all hold:
- PIL classed it a winner;
- its unrealized PnL is at least `min_profit_pct` (the design's `pal_min_profit_pct`, 5 %);
- the current signal still points its way;
- it had no add within `window_seconds` (one add per position per window: default 4 h, the
  signals' holding horizon of 12 bars of 5 m plus margin, so an add is judged on a fresh move);
- there is room: the add is `factor` (`pal_amplification_factor`, 1.5) times the position's
  notional, capped by `room_usd`, the smallest of the risk limits' and PBA's room for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from core.decimals import to_decimal

__all__ = ["AmplifierConfig", "AmplifierError", "Amplification", "decide"]

CENT = Decimal("0.01")


class AmplifierError(ValueError):
    """Input PAL refuses; the message names the field."""


@dataclass(frozen=True)
class AmplifierConfig:
    min_profit_pct: Decimal = Decimal(5)
    factor: Decimal = Decimal("1.5")
    window_seconds: float = 4 * 3600

    def __post_init__(self) -> None:
        mp, fa = to_decimal(self.min_profit_pct, "min_profit_pct"), to_decimal(self.factor, "factor")
        if not Decimal(0) < mp <= 100:
            raise AmplifierError(f"min_profit_pct must be in (0, 100] %, got {mp}")
        if not Decimal(0) < fa <= 5:
            raise AmplifierError(f"factor must be in (0, 5], got {fa}")
        if self.window_seconds < 0:
            raise AmplifierError(f"window_seconds must be >= 0, got {self.window_seconds}")
        object.__setattr__(self, "min_profit_pct", mp)
        object.__setattr__(self, "factor", fa)


@dataclass(frozen=True)
class Amplification:
    action: str  # add / hold
    add_size_usd: Decimal
    reason: str


def decide(*, label: str, pnl_pct, side: str, signal_side: str | None, notional_usd, room_usd,
           last_add_at: datetime | None, now: datetime, config: AmplifierConfig) -> Amplification:
    pnl = to_decimal(pnl_pct, "pnl_pct")
    notional, room = to_decimal(notional_usd, "notional_usd"), to_decimal(room_usd, "room_usd")
    if notional <= 0:
        raise AmplifierError(f"notional_usd must be > 0, got {notional}")
    if now.tzinfo is None or (last_add_at is not None and last_add_at.tzinfo is None):
        raise AmplifierError("now and last_add_at must be timezone-aware (UTC)")

    def hold(why: str) -> Amplification:
        return Amplification("hold", Decimal(0), why)

    if label != "winner":
        return hold(f"classed {label}, only winners are amplified")
    if pnl < config.min_profit_pct:
        return hold(f"unrealized PnL {pnl:.2f}% < {config.min_profit_pct}%")
    if signal_side != side:
        return hold(f"the current signal ({signal_side or 'none'}) does not agree with the {side} position")
    if last_add_at is not None and (now - last_add_at).total_seconds() < config.window_seconds:
        return hold(f"already amplified at {last_add_at:%Y-%m-%d %H:%M} UTC (one add per "
                    f"{config.window_seconds / 3600:g} h)")
    want = notional * config.factor
    size = min(want, max(room, Decimal(0))).quantize(CENT, rounding=ROUND_DOWN)
    if size <= 0:
        return hold(f"no room left under the risk and portfolio caps for a {want:.2f} USD add")
    capped = " (capped by the room left)" if size < want else ""
    return Amplification("add", size, f"winner at {pnl:.2f}% with the signal: add {config.factor}x its "
                                      f"{notional} USD{capped}")
