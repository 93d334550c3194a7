"""The project's one Decimal conversion and step rounding.

Money and quantities are Decimal end to end. Every conversion goes through `to_decimal`, which
refuses what is not a finite number with a ValueError naming the argument, so a bad number is
refused at the edge instead of surfacing later as a wrong amount. Floats go through their
shortest repr (0.1 -> Decimal("0.1"), not 0.1000000000000000055...).
"""
from __future__ import annotations

import numbers
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext

__all__ = ["ZERO", "NotFinite", "non_negative", "positive", "round_to_step", "to_decimal", "to_decimal_or_none"]

ZERO = Decimal("0")
_ROUNDINGS = (ROUND_DOWN, ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, "ROUND_HALF_UP", "ROUND_UP",
              "ROUND_HALF_DOWN", "ROUND_05UP")


class NotFinite(ValueError):
    """A number, but NaN or an infinity."""


def to_decimal(value: object, name: str = "value") -> Decimal:
    """`value` as a finite Decimal (Decimal, int, str; floats through their shortest repr)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int | str):
        try:
            d = Decimal(value.strip() if isinstance(value, str) else value)
        except ArithmeticError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    elif isinstance(value, numbers.Integral):  # numpy ints
        d = Decimal(int(value))
    elif isinstance(value, numbers.Real):  # float, numpy floats (whose repr is np.float64(...))
        d = Decimal(repr(float(value)))
    else:
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not d.is_finite():
        raise NotFinite(f"{name} is not a finite number (got {value!r})")
    return d


def to_decimal_or_none(value: object, name: str = "value") -> Decimal | None:
    """None stays None (an optional field an exchange may leave out); anything else as to_decimal."""
    return None if value is None else to_decimal(value, name)


def positive(value: object, name: str = "value") -> Decimal:
    d = to_decimal(value, name)
    if d <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return d


def non_negative(value: object, name: str = "value") -> Decimal:
    d = to_decimal(value, name)
    if d < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return d


def round_to_step(x: object, step: object, rounding: str = ROUND_DOWN) -> Decimal:
    """`x` rounded to a multiple of `step` (a lot size, a tick), exactly, whatever the number of
    digits. ROUND_DOWN (the default) goes toward zero: a quantity rounded to the lot size never
    exceeds what was asked. ROUND_CEILING / ROUND_FLOOR go toward +/- infinity."""
    if rounding not in _ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}")
    x = to_decimal(x, "x")
    step = positive(step, "step")
    with localcontext() as ctx:
        ctx.prec = max(50, len(x.as_tuple().digits) + 30)
        units = (x / step).to_integral_value(rounding=rounding)
        return units * step
