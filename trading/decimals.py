"""Checked conversions to Decimal for the pure domain code (execution planning, position math).

Pure: no Django. Each raises ValueError naming the argument, so a bad number is refused with a
clear message at the edge of the domain code instead of surfacing as a wrong amount later.
"""
from __future__ import annotations

import numbers
from decimal import Decimal


def to_decimal(value: object, name: str) -> Decimal:
    """`value` as a finite Decimal (Decimal, int, str; floats through their shortest repr)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int | str):
        try:
            d = Decimal(value)
        except ArithmeticError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    elif isinstance(value, numbers.Integral):  # numpy ints
        d = Decimal(int(value))
    elif isinstance(value, numbers.Real):  # float, numpy floats
        d = Decimal(repr(float(value)))
    else:
        raise ValueError(f"{name} must be a Decimal, got {type(value).__name__} {value!r}")
    if not d.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return d


def positive(value: object, name: str) -> Decimal:
    d = to_decimal(value, name)
    if d <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return d


def non_negative(value: object, name: str) -> Decimal:
    d = to_decimal(value, name)
    if d < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return d
