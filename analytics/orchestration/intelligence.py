"""Position intelligence (PIL, pure): one open position's facts in, a class, a score and the reasons out.

Classes, the first that applies:
- `at_risk`: the current signal points the other way, volatility spiked (ATR now at least
  `vol_spike_ratio` times the ATR at entry), or the liquidation price is within
  `liquidation_atr` ATRs of the mark;
- `stale`: older than its expected horizon and its PnL still inside the `stale_band_pct`;
- `winner`: unrealized PnL >= 0;
- `loser`: unrealized PnL < 0.

The score, in [-1, 1], is the PnL in units of `score_scale_pct` clipped to [-1, 1], less 0.5 for
each at-risk reason (clipped again): PAL amplifies winners only, and the exits may tighten the
stops of at-risk positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.decimals import to_decimal
from core.enums import PositionSide

__all__ = ["AT_RISK", "LOSER", "STALE", "WINNER", "Assessment", "IntelligenceError", "PositionFacts", "classify"]

WINNER, LOSER, STALE, AT_RISK = "winner", "loser", "stale", "at_risk"
LONG, SHORT = PositionSide.LONG.value, PositionSide.SHORT.value


class IntelligenceError(ValueError):
    """Facts PIL refuses; the message names the field."""


@dataclass(frozen=True)
class PositionFacts:
    side: str  # long / short
    entry_price: Decimal
    mark_price: Decimal
    bars_open: int
    horizon_bars: int
    signal_side: str | None = None  # the current signal's direction, None when there is none
    atr_now: Decimal | None = None
    atr_at_entry: Decimal | None = None
    liquidation_price: Decimal | None = None

    def __post_init__(self) -> None:
        if self.side not in (LONG, SHORT):
            raise IntelligenceError(f"side must be long or short, got {self.side!r}")
        if self.signal_side not in (None, LONG, SHORT):
            raise IntelligenceError(f"signal_side must be long, short or None, got {self.signal_side!r}")
        for name in ("entry_price", "mark_price"):
            v = to_decimal(getattr(self, name), name)
            if v <= 0:
                raise IntelligenceError(f"{name} must be > 0, got {v}")
            object.__setattr__(self, name, v)
        for name in ("atr_now", "atr_at_entry", "liquidation_price"):
            raw = getattr(self, name)
            if raw is not None:
                v = to_decimal(raw, name)
                if v <= 0:
                    raise IntelligenceError(f"{name} must be > 0 when known, got {v}")
                object.__setattr__(self, name, v)
        if self.bars_open < 0 or self.horizon_bars < 1:
            raise IntelligenceError(f"bars_open must be >= 0 and horizon_bars >= 1, got {self.bars_open}, "
                                    f"{self.horizon_bars}")

    @property
    def pnl_pct(self) -> Decimal:
        move = (self.mark_price - self.entry_price) / self.entry_price * 100
        return move if self.side == LONG else -move


@dataclass(frozen=True)
class Assessment:
    label: str
    score: float
    pnl_pct: Decimal
    reasons: tuple[str, ...]


def _clip(x: float) -> float:
    return max(-1.0, min(1.0, x))


def classify(f: PositionFacts, *, stale_band_pct=Decimal("0.5"), vol_spike_ratio=Decimal(2),
             liquidation_atr=Decimal(3), score_scale_pct=Decimal(5)) -> Assessment:
    pnl = f.pnl_pct
    risks = []
    if f.signal_side is not None and f.signal_side != f.side:
        risks.append(f"the signal reversed to {f.signal_side}")
    if f.atr_now is not None and f.atr_at_entry is not None and f.atr_now >= vol_spike_ratio * f.atr_at_entry:
        risks.append(f"volatility spiked: ATR {f.atr_now} >= {vol_spike_ratio}x {f.atr_at_entry} at entry")
    if f.liquidation_price is not None and f.atr_now is not None:
        distance = abs(f.mark_price - f.liquidation_price)
        if distance <= liquidation_atr * f.atr_now:
            risks.append(f"liquidation near: {distance} from the mark <= {liquidation_atr} ATR")
    score = _clip(float(pnl / score_scale_pct)) - 0.5 * len(risks)
    if risks:
        return Assessment(AT_RISK, _clip(score), pnl, tuple(risks))
    if f.bars_open >= f.horizon_bars and abs(pnl) < stale_band_pct:
        return Assessment(STALE, _clip(score), pnl, (f"{f.bars_open} bars open (horizon {f.horizon_bars}) and PnL "
                                                     f"{pnl:.2f}% inside +-{stale_band_pct}%",))
    label = WINNER if pnl >= 0 else LOSER
    return Assessment(label, _clip(score), pnl, (f"unrealized PnL {pnl:.2f}%",))
