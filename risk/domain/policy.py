"""The risk policy: every limit the validator and the safety governor enforce, as one frozen value.

Money and percentages are Decimal; percentages are in percent (10 = 10 %). A Policy built with
the constructor is taken as given (only types are coerced); values from outside (an operator's
edit, a stored JSON row) go through `Policy.from_values` / `validate_policy_values`, which check
every field and raise PolicyError naming each bad one.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from core.decimals import NotFinite, to_decimal

__all__ = ["POLICY_FIELDS", "Policy", "PolicyError", "validate_policy_values"]

_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)
MAX_EXCHANGE_LEVERAGE = 125


class PolicyError(ValueError):
    """Bad policy values. `errors` maps each bad field (or "policy" for cross-field problems and
    unknown names) to why; str() lists them all."""

    def __init__(self, message: str | None = None, errors: Mapping[str, str] | None = None):
        self.errors: dict[str, str] = dict(errors or {})
        if message is None:
            message = "invalid risk policy: " + "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        super().__init__(message)


@dataclass(frozen=True)
class Policy:
    version: int = 1
    max_leverage: int = 20
    max_position_usd: Decimal = Decimal("10000")
    max_open_positions: int = 10
    max_daily_drawdown_pct: Decimal = Decimal("10")
    emergency_drawdown_pct: Decimal = Decimal("15")
    emergency_consecutive_losses: int = 5
    max_slippage_pct: Decimal = Decimal("0.5")
    retry_attempts: int = 3
    retry_delay_seconds: Decimal = Decimal("1")
    price_collar_pct: Decimal = Decimal("2")
    reference_price_max_age_seconds: int = 120
    max_orders_per_minute: int = 30
    min_confidence: Decimal = Decimal("0.6")
    symbol_allowlist: tuple[str, ...] = ()  # empty: every symbol allowed
    symbol_denylist: tuple[str, ...] = ()
    max_total_exposure_pct: Decimal = Decimal("300")  # gross positions + open entry orders, % of equity
    default_sector_exposure_pct: Decimal = Decimal("100")
    sector_exposure_pct: tuple[tuple[str, Decimal], ...] = ()  # per-sector caps, % of equity
    flatten_on_emergency: bool = True
    stop_loss_atr_multiple: Decimal = Decimal("2")
    take_profit_atr_multiple: Decimal = Decimal("3")
    trailing_stop_atr_multiple: Decimal = Decimal("2")
    break_even_trigger_pct: Decimal = Decimal("1")

    def __post_init__(self) -> None:
        # Type coercion only (ints/strings given to the constructor); range checks: from_values.
        for name in _DECIMAL_FIELDS:
            v = getattr(self, name)
            if not isinstance(v, Decimal) and not isinstance(v, bool) and isinstance(v, int | float | str):
                object.__setattr__(self, name, to_decimal(v, name))
        for name in ("symbol_allowlist", "symbol_denylist"):
            v = getattr(self, name)
            if not isinstance(v, tuple):
                object.__setattr__(self, name, tuple(v))
        sectors = self.sector_exposure_pct
        if isinstance(sectors, Mapping):
            sectors = sectors.items()
        if not isinstance(sectors, tuple) or any(not isinstance(c, Decimal) for _, c in sectors):
            object.__setattr__(self, "sector_exposure_pct", tuple(sorted(
                (str(k), to_decimal(v, f"sector_exposure_pct[{k!r}]")) for k, v in sectors)))

    def sector_cap_pct(self, sector: str) -> Decimal:
        """The exposure cap of `sector` in % of equity (its own cap, else the default)."""
        for name, cap in self.sector_exposure_pct:
            if name == sector:
                return cap
        return self.default_sector_exposure_pct

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, base: Policy | None = None) -> Policy:
        """A checked Policy from plain values (see validate_policy_values)."""
        return validate_policy_values(values, base=base)

    def to_values(self, *, include_version: bool = False) -> dict[str, Any]:
        """JSON-friendly values of every editable field (Decimals as canonical strings, tuples as
        lists, sector caps as a dict). `Policy.from_values(p.to_values(include_version=True)) == p`."""
        out: dict[str, Any] = {"version": self.version} if include_version else {}
        for name in POLICY_FIELDS:
            v = getattr(self, name)
            if name == "sector_exposure_pct":
                out[name] = {k: _dec_str(c) for k, c in v}
            elif isinstance(v, Decimal):
                out[name] = _dec_str(v)
            elif isinstance(v, tuple):
                out[name] = list(v)
            else:
                out[name] = v
        return out


POLICY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Policy) if f.name != "version")

# name -> (lower bound, lower inclusive, upper bound or None)
_INT_RULES: dict[str, tuple[int, int | None]] = {
    "max_leverage": (1, MAX_EXCHANGE_LEVERAGE),
    "max_open_positions": (1, None),
    "emergency_consecutive_losses": (1, None),
    "retry_attempts": (0, None),
    "reference_price_max_age_seconds": (1, None),
    "max_orders_per_minute": (1, None),
}
_DECIMAL_RULES: dict[str, tuple[Decimal, bool, Decimal | None]] = {
    "max_position_usd": (_ZERO, False, None),
    "max_daily_drawdown_pct": (_ZERO, False, _HUNDRED),
    "emergency_drawdown_pct": (_ZERO, False, _HUNDRED),
    "max_slippage_pct": (_ZERO, False, _HUNDRED),
    "retry_delay_seconds": (_ZERO, True, None),
    "price_collar_pct": (_ZERO, False, _HUNDRED),
    "min_confidence": (_ZERO, True, _ONE),
    "max_total_exposure_pct": (_ZERO, False, None),
    "default_sector_exposure_pct": (_ZERO, False, None),
    "stop_loss_atr_multiple": (_ZERO, False, None),
    "take_profit_atr_multiple": (_ZERO, False, None),
    "trailing_stop_atr_multiple": (_ZERO, False, None),
    "break_even_trigger_pct": (_ZERO, False, None),
}
_DECIMAL_FIELDS = tuple(_DECIMAL_RULES)


def _dec_str(d: Decimal) -> str:
    """Plain canonical notation: 10000 (not 1E+4), 0.5 (not 0.50)."""
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "0") else s


def _parse_decimal(raw: Any) -> tuple[Decimal | None, str | None]:
    if isinstance(raw, bool):
        return None, f"must be a number, got {raw!r}"
    if not isinstance(raw, Decimal | int | float | str):
        return None, f"must be a number, got {type(raw).__name__}"
    try:
        d = to_decimal(raw)
    except NotFinite:
        return None, f"must be a finite number, got {raw!r}"
    except ValueError:
        return None, f"not a number: {raw!r}"
    return to_decimal(_dec_str(d)), None


def _parse_int(raw: Any) -> tuple[int | None, str | None]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw, None
    d, err = _parse_decimal(raw)
    if err:
        return None, err.replace("a number", "an integer").replace("a finite number", "a finite integer")
    if d != d.to_integral_value():
        return None, f"must be a whole number, got {raw!r}"
    return int(d), None


def _bound_error(value: Decimal | int, lo: Decimal | int, lo_inclusive: bool, hi: Decimal | int | None) -> str | None:
    def show(x: Decimal | int) -> str:
        return _dec_str(x) if isinstance(x, Decimal) else str(x)

    too_low = value < lo if lo_inclusive else value <= lo
    if not too_low and (hi is None or value <= hi):
        return None
    if hi is not None:
        need = f"must be in {'[' if lo_inclusive else '('}{show(lo)}, {show(hi)}]"
    else:
        need = f"must be {'>=' if lo_inclusive else '>'} {show(lo)}"
    why = " (negative)" if value < 0 else (" (zero)" if value == 0 and too_low else "")
    return f"{need}, got {show(value)}{why}"


def _parse_symbols(raw: Any) -> tuple[tuple[str, ...] | None, str | None]:
    if raw is None:
        return (), None
    if isinstance(raw, str):
        items: Iterable[Any] = [s for s in raw.split(",") if s.strip()]
    elif isinstance(raw, list | tuple | set | frozenset):
        items = sorted(raw) if isinstance(raw, set | frozenset) else raw
    else:
        return None, f"must be a list of symbols, got {type(raw).__name__}"
    out: list[str] = []
    bad: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            bad.append(repr(item))
            continue
        s = item.strip()
        if s not in out:
            out.append(s)
    if bad:
        return None, f"every symbol must be a non-empty string, got {', '.join(bad)}"
    return tuple(out), None


def _parse_sectors(raw: Any) -> tuple[tuple[tuple[str, Decimal], ...] | None, str | None]:
    if raw is None:
        return (), None
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, list | tuple):
        pairs = []
        for item in raw:
            if not isinstance(item, list | tuple) or len(item) != 2:
                return None, f"must be a mapping of sector -> % of equity, got item {item!r}"
            pairs.append((item[0], item[1]))
    else:
        return None, f"must be a mapping of sector -> % of equity, got {type(raw).__name__}"
    out: dict[str, Decimal] = {}
    problems: list[str] = []
    for name, cap in pairs:
        if not isinstance(name, str):
            problems.append(f"sector name {name!r} is not a string")
            continue
        d, err = _parse_decimal(cap)
        if err is None:
            err = _bound_error(d, _ZERO, False, None)
        if err:
            problems.append(f"sector {name.strip()!r} {err}")
            continue
        out[name.strip()] = d
    if problems:
        return None, "; ".join(problems)
    return tuple(sorted(out.items())), None


def _parse_bool(raw: Any) -> tuple[bool | None, str | None]:
    if isinstance(raw, bool):
        return raw, None
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw), None
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return raw.strip().lower() in ("true", "1", "yes"), None
    return None, f"must be true or false, got {raw!r}"


def validate_policy_values(values: Mapping[str, Any], *, base: Policy | None = None) -> Policy:
    """Check every value and build a Policy. Fields not given keep `base`'s values (the design's
    defaults when base is None); "version" may be given (an integer >= 1).

    Raises PolicyError naming EVERY bad field with why: unknown names, non-numbers, NaN/inf,
    negatives, zero where a positive is needed, leverage outside 1..125, drawdowns outside (0, 100],
    emergency drawdown below the daily drawdown, symbols both allowed and denied.
    """
    if not isinstance(values, Mapping):
        raise PolicyError(f"policy values must be a mapping of field -> value, got {type(values).__name__}")
    base = base or Policy()
    errors: dict[str, str] = {}
    unknown = sorted(str(k) for k in values if k not in POLICY_FIELDS and k != "version")
    if unknown:
        errors["unknown_fields"] = (f"unknown field(s) {', '.join(unknown)}; "
                                    f"known: {', '.join(POLICY_FIELDS)}")
    out: dict[str, Any] = {}
    for name in ("version", *POLICY_FIELDS):
        if name not in values:
            out[name] = getattr(base, name)
            continue
        raw = values[name]
        err: str | None
        if name == "version":
            val, err = _parse_int(raw)
            if err is None:
                err = _bound_error(val, 1, True, None)
        elif name in _INT_RULES:
            val, err = _parse_int(raw)
            if err is None:
                lo, hi = _INT_RULES[name]
                err = _bound_error(val, lo, True, hi)
        elif name in _DECIMAL_RULES:
            val, err = _parse_decimal(raw)
            if err is None:
                lo, inclusive, hi = _DECIMAL_RULES[name]
                err = _bound_error(val, lo, inclusive, hi)
        elif name in ("symbol_allowlist", "symbol_denylist"):
            val, err = _parse_symbols(raw)
        elif name == "sector_exposure_pct":
            val, err = _parse_sectors(raw)
        elif name == "flatten_on_emergency":
            val, err = _parse_bool(raw)
        else:  # pragma: no cover - every field is classified above
            raise AssertionError(name)
        if err:
            errors[name] = err
        else:
            out[name] = val
    daily, emergency = out.get("max_daily_drawdown_pct"), out.get("emergency_drawdown_pct")
    if "max_daily_drawdown_pct" not in errors and "emergency_drawdown_pct" not in errors and emergency < daily:
        errors["emergency_drawdown_pct"] = (f"must be >= max_daily_drawdown_pct ({_dec_str(daily)}), "
                                            f"got {_dec_str(emergency)}")
    if "symbol_allowlist" not in errors and "symbol_denylist" not in errors:
        both = [s for s in out["symbol_allowlist"] if s in out["symbol_denylist"]]
        if both:
            errors["symbol_denylist"] = f"symbol(s) both allowed and denied: {', '.join(both)}"
    if errors:
        raise PolicyError(errors=errors)
    return Policy(**out)
