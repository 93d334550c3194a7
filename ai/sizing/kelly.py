"""Fractional Kelly sizing (pure).

Kelly (1956), for a bet that wins b per unit staked with probability p and loses the stake
otherwise: f* = p - (1 - p) / b. Here b is the payoff ratio (average win / average loss) of the
trades. f* <= 0 (p <= 1 / (1 + b)) means no edge: size zero. Full Kelly is far too aggressive
for estimated p and b, so a fraction of it (default a quarter) is used, capped at max_fraction.

final_size_usd() is the size actually traded: the smallest of the agent's fraction of the size
the risk policy allows, the Kelly fraction of equity and the policy's maximum position size;
never negative, in Decimal (money).
"""
from __future__ import annotations

import math
from decimal import ROUND_DOWN, Decimal

from core.decimals import to_decimal

DEFAULT_KELLY_FRACTION = 0.25
DEFAULT_MAX_FRACTION = 0.25
_CENTS = Decimal("0.01")


def full_kelly(p: float, b: float) -> float:
    """f* = p - (1 - p) / b, clipped at 0. p in [0, 1], b > 0 (else ValueError)."""
    p = float(p)
    b = float(b)
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ValueError(f"probability must be in [0, 1], got {p!r}")
    if not (math.isfinite(b) and b > 0.0):
        raise ValueError(f"payoff ratio must be a positive finite number, got {b!r}")
    return max(0.0, p - (1.0 - p) / b)


def kelly_fraction(p: float, b: float, *, fraction: float = DEFAULT_KELLY_FRACTION,
                   max_fraction: float = DEFAULT_MAX_FRACTION) -> float:
    """Fractional Kelly: fraction x f*, capped at max_fraction; in [0, max_fraction]."""
    if not (0.0 <= fraction <= 1.0):
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    if not (0.0 <= max_fraction <= 1.0):
        raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction!r}")
    # Rounded to 12 decimals so float noise (0.1 computed as 0.0999...98) does not cost a cent.
    return min(max_fraction, round(fraction * full_kelly(p, b), 12))


def breakeven_probability(b: float) -> float:
    """The p at and below which Kelly sizes zero: 1 / (1 + b)."""
    return 1.0 / (1.0 + float(b))


def _dec(value) -> Decimal:
    return to_decimal(value, "amount")


def final_size_usd(*, agent_fraction: float, allowed_size_usd, kelly: float, equity_usd,
                   max_position_usd=None) -> Decimal:
    """min(agent_fraction x allowed size, kelly x equity, policy max position size), >= 0,
    rounded down to the cent. agent_fraction and kelly are clipped to [0, 1]."""
    a = min(1.0, max(0.0, float(agent_fraction)))
    k = min(1.0, max(0.0, float(kelly)))
    caps = [_dec(a) * max(Decimal(0), _dec(allowed_size_usd)),
            _dec(k) * max(Decimal(0), _dec(equity_usd))]
    if max_position_usd is not None:
        caps.append(max(Decimal(0), _dec(max_position_usd)))
    return max(Decimal(0), min(caps)).quantize(_CENTS, rounding=ROUND_DOWN)
