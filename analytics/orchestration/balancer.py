"""The portfolio balancer's rule (pure): an account snapshot and the caps in, reductions out.

Caps, each a percentage of equity in (0, 100] or a count:
- per sector: the gross notional of a sector's open positions (`max_sector_exposure_pct`, the
  design's `pba_max_sector_exposure_pct`, 30 %);
- the number of open positions (`max_positions`);
- the gross notional of all open positions (`max_total_exposure_pct`).

A cap is breached beyond cap + `band_pct` (a no-trade band against churn), and a breach is
brought back to the cap itself. Reductions bring the book back under every cap, in that order:
an over-weight sector gives back its excess in proportion to each position's share of it; the
smallest positions beyond the count are closed; then an excess over the total cap is taken from
every position in proportion. Amounts
are rounded up to the cent (so the result is under the cap, not a cent above) and never exceed
what is left of a position.

Idempotent: reductions already requested but not yet filled (`pending_reductions_usd`) are taken
off the positions first, so a second run before the first one has filled asks for nothing more.

Money is Decimal; no Django, no I/O. The balancer service (analytics/orchestration) loads the
snapshot, calls `balance()`, and publishes `portfolio.balance`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_UP, Decimal

from core.decimals import to_decimal

__all__ = ["BalanceDecision", "BalancerCaps", "BalancerError", "Holding", "Reduction", "balance"]

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


class BalancerError(ValueError):
    """Input the balancer refuses; the message names the field and the value."""


@dataclass(frozen=True)
class BalancerCaps:
    max_sector_exposure_pct: Decimal = Decimal(30)
    max_positions: int = 10
    max_total_exposure_pct: Decimal = Decimal(100)
    # A no-trade band: a cap counts as breached only beyond cap + band (percentage points of equity),
    # and is then brought back to the cap itself. Without it, the cent a reduction loses to lot
    # rounding or a small price move would be chased with a new order on every pass.
    band_pct: Decimal = Decimal("0.5")

    def __post_init__(self) -> None:
        for name in ("max_sector_exposure_pct", "max_total_exposure_pct"):
            value = to_decimal(getattr(self, name), name)
            if not Decimal(0) < value <= HUNDRED:
                raise BalancerError(f"{name} must be in (0, 100] %, got {value}")
            object.__setattr__(self, name, value)
        band = to_decimal(self.band_pct, "band_pct")
        if not Decimal(0) <= band <= 10:
            raise BalancerError(f"band_pct must be in [0, 10] percentage points, got {band}")
        object.__setattr__(self, "band_pct", band)
        if isinstance(self.max_positions, bool) or not isinstance(self.max_positions, int) or self.max_positions < 1:
            raise BalancerError(f"max_positions must be a whole number >= 1, got {self.max_positions!r}")


@dataclass(frozen=True)
class Holding:
    """One open position: its gross notional (absolute, USD) and its sector."""

    symbol: str
    sector: str
    notional_usd: Decimal

    def __post_init__(self) -> None:
        if not self.symbol:
            raise BalancerError("symbol must not be empty")
        value = to_decimal(self.notional_usd, f"notional_usd of {self.symbol}")
        if value < 0:
            raise BalancerError(f"notional_usd of {self.symbol} must be >= 0, got {value}")
        object.__setattr__(self, "notional_usd", value)


@dataclass(frozen=True)
class Reduction:
    symbol: str
    amount_usd: Decimal
    reasons: tuple[str, ...]

    @property
    def directive(self) -> str:
        """The text `portfolio.balance` carries (trading/execution/planning.py parses it)."""
        return f"reduce {self.symbol} {self.amount_usd}"


@dataclass(frozen=True)
class BalanceDecision:
    equity_usd: Decimal
    exposures_usd: dict[str, Decimal]  # per symbol, after pending reductions
    sector_exposures_usd: dict[str, Decimal]
    gross_exposure_usd: Decimal
    reductions: tuple[Reduction, ...] = field(default_factory=tuple)
    breaches: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rebalance_required(self) -> bool:
        return bool(self.reductions)

    @property
    def symbols_to_reduce(self) -> list[str]:
        return [r.symbol for r in self.reductions]


def _up(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_UP)


def balance(equity_usd, holdings: list[Holding], caps: BalancerCaps,
            pending_reductions_usd: dict[str, Decimal] | None = None) -> BalanceDecision:
    equity = to_decimal(equity_usd, "equity_usd")
    if equity <= 0:
        raise BalancerError(f"equity_usd must be > 0 to measure exposure against it, got {equity}")
    seen: set[str] = set()
    for h in holdings:
        if h.symbol in seen:
            raise BalancerError(f"symbol {h.symbol} appears twice in the snapshot")
        seen.add(h.symbol)
    pending = {s: to_decimal(v, f"pending reduction of {s}") for s, v in (pending_reductions_usd or {}).items()}
    for s, v in pending.items():
        if v < 0:
            raise BalancerError(f"pending reduction of {s} must be >= 0, got {v}")

    # What each position will be once the reductions already on their way have filled.
    left: dict[str, Decimal] = {h.symbol: max(Decimal(0), h.notional_usd - pending.get(h.symbol, Decimal(0)))
                                for h in holdings}
    sector_of = {h.symbol: h.sector for h in holdings}
    cut: dict[str, Decimal] = defaultdict(Decimal)
    why: dict[str, list[str]] = defaultdict(list)
    breaches: list[str] = []

    def take(symbol: str, amount: Decimal, reason: str) -> None:
        amount = min(_up(amount), left[symbol])
        if amount <= 0:
            return
        left[symbol] -= amount
        cut[symbol] += amount
        if reason not in why[symbol]:
            why[symbol].append(reason)

    def sectors() -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(Decimal)
        for s, v in left.items():
            out[sector_of[s]] += v
        return dict(out)

    exposures_before = dict(left)
    sector_before = sectors()

    # 1. sectors over their cap give back the excess, each position in proportion to its share.
    band = equity * caps.band_pct / HUNDRED
    sector_cap = equity * caps.max_sector_exposure_pct / HUNDRED
    for sector, total in sorted(sector_before.items()):
        if total > sector_cap + band:
            excess = total - sector_cap
            breaches.append(f"sector {sector}: {total / equity * HUNDRED:.2f}% > {caps.max_sector_exposure_pct}%")
            members = sorted((s for s in left if sector_of[s] == sector), key=lambda s: (-left[s], s))
            shares = {s: left[s] for s in members}
            for s in members:
                take(s, excess * shares[s] / total, f"sector {sector} over {caps.max_sector_exposure_pct}%")

    # 2. beyond the count, the smallest positions close.
    open_now = sorted((s for s in left if left[s] > 0), key=lambda s: (left[s], s))
    if len(open_now) > caps.max_positions:
        n = len(open_now) - caps.max_positions
        breaches.append(f"{len(open_now)} positions > {caps.max_positions}")
        for s in open_now[:n]:
            take(s, left[s], f"more than {caps.max_positions} positions: the smallest close")

    # 3. the whole book over its cap gives back the excess in proportion.
    total_cap = equity * caps.max_total_exposure_pct / HUNDRED
    gross = sum(left.values(), Decimal(0))
    if gross > total_cap + band:
        excess = gross - total_cap
        breaches.append(f"gross {gross / equity * HUNDRED:.2f}% > {caps.max_total_exposure_pct}%")
        shares = dict(left)
        for s in sorted(shares, key=lambda s: (-shares[s], s)):
            take(s, excess * shares[s] / gross, f"gross exposure over {caps.max_total_exposure_pct}%")

    reductions = tuple(Reduction(s, cut[s], tuple(why[s])) for s in sorted(cut) if cut[s] > 0)
    return BalanceDecision(equity_usd=equity, exposures_usd=exposures_before, sector_exposures_usd=sector_before,
                           gross_exposure_usd=sum(exposures_before.values(), Decimal(0)), reductions=reductions,
                           breaches=tuple(breaches))
