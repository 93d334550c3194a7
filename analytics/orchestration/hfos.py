"""AI-HFOS, the orchestrator's rule (pure): directives in, the ones that stand and the ones overruled
out, each overruled one with the directive that beat it and why.

Layers, highest first by default (the design's `hfos_priority_hierarchy`): self-healing, the risk
manager, HFOS's own rules, the portfolio balancer (PBA), profit amplification (PAL).

A directive either adds risk (PAL's add, an entry) or takes it away (a reduction, REDUCE_ONLY, a
halt, a block). Two directives conflict when they point opposite ways at the same symbol, or one
of them is system-wide (symbol "*"). The higher layer wins; the lower is overruled. Of several
directives pointing the same way at the same target, the highest layer's stands and the others are
superseded (two layers asking to reduce one symbol must not reduce it twice).

HFOS's own rules (`own_directives`): no new risk while any service is CRITICAL, and no
amplification while the drawdown is beyond a set threshold.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from core.decimals import to_decimal

__all__ = ["ADDS", "DEFAULT_HIERARCHY", "LAYERS", "REDUCES", "Directive", "Overruled", "Resolution", "HfosError",
           "check_directives", "check_hierarchy", "own_directives", "resolve"]

SELF_HEALING, RISK, HFOS, PBA, PAL = "self_healing", "risk", "hfos", "pba", "pal"
LAYERS = (SELF_HEALING, RISK, HFOS, PBA, PAL)
DEFAULT_HIERARCHY = LAYERS
EVERYTHING = "*"

# What a directive does, by the direction it pushes risk.
ADDS = frozenset({"add", "enter"})
REDUCES = frozenset({"reduce", "close", "reduce_only", "halt", "block_new_risk", "block_amplification"})
# A block of amplification only stops PAL-style adds, not every entry.
_ONLY_AGAINST = {"block_amplification": frozenset({"add"})}


class HfosError(ValueError):
    """A directive or a hierarchy HFOS refuses; the message names what is wrong."""


@dataclass(frozen=True)
class Directive:
    layer: str
    kind: str
    symbol: str  # "*" for the whole system
    reason: str
    amount_usd: Decimal = Decimal(0)
    trace_id: str = ""

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            raise HfosError(f"unknown layer {self.layer!r}; layers: {', '.join(LAYERS)}")
        if self.kind not in ADDS | REDUCES:
            raise HfosError(f"unknown directive kind {self.kind!r}; kinds: {', '.join(sorted(ADDS | REDUCES))}")
        if not self.symbol:
            raise HfosError("symbol must not be empty ('*' for the whole system)")
        amount = to_decimal(self.amount_usd, "amount_usd")
        if amount < 0:
            raise HfosError(f"amount_usd must be >= 0, got {amount}")
        object.__setattr__(self, "amount_usd", amount)

    @property
    def adds_risk(self) -> bool:
        return self.kind in ADDS

    def describe(self) -> str:
        amount = f" {self.amount_usd} USD" if self.amount_usd else ""
        return f"{self.layer}: {self.kind} {self.symbol}{amount} ({self.reason})"


@dataclass(frozen=True)
class Overruled:
    directive: Directive
    by: Directive
    why: str


@dataclass(frozen=True)
class Resolution:
    accepted: tuple[Directive, ...]
    overruled: tuple[Overruled, ...] = field(default_factory=tuple)


def check_hierarchy(hierarchy) -> tuple[str, ...]:
    """The hierarchy as a tuple; HfosError naming an unknown, missing or repeated layer."""
    order = tuple(hierarchy)
    unknown = [x for x in order if x not in LAYERS]
    if unknown:
        raise HfosError(f"hfos_priority_hierarchy names unknown layer(s) {', '.join(map(repr, unknown))}; "
                        f"layers: {', '.join(LAYERS)}")
    repeated = sorted({x for x in order if order.count(x) > 1})
    if repeated:
        raise HfosError(f"hfos_priority_hierarchy names {', '.join(repeated)} more than once")
    missing = [x for x in LAYERS if x not in order]
    if missing:
        raise HfosError(f"hfos_priority_hierarchy leaves out {', '.join(missing)}: every layer needs a rank")
    # The layers that protect the account rank first: HFOS, the balancer or amplification overruling
    # self-healing or the risk manager would record a protection as beaten (the validator would
    # still refuse the trade, so the record would lie).
    if set(order[:2]) != {SELF_HEALING, RISK}:
        raise HfosError(f"hfos_priority_hierarchy must rank self_healing and risk above hfos, pba and pal, "
                        f"got {' > '.join(order)}")
    return order


# Kinds that act on one position and need it to exist.
_ON_A_POSITION = frozenset({"add", "reduce", "close"})


def check_directives(directives, open_notional_usd: dict[str, Decimal], known_symbols=frozenset()) -> None:
    """Refuse, naming every problem at once, directives that cannot be carried out: one for a symbol
    that is not traded, one acting on a position that is not open, a reduction bigger than the
    position. Nothing is decided on a batch with one bad directive (no half-applied pass)."""
    problems = []
    for d in directives:
        if d.symbol == EVERYTHING:
            if d.kind in _ON_A_POSITION:
                problems.append(f"{d.describe()}: {d.kind} needs one symbol, not '*'")
            continue
        if d.symbol not in open_notional_usd and d.symbol not in known_symbols:
            problems.append(f"{d.describe()}: unknown symbol {d.symbol}")
            continue
        if d.kind in _ON_A_POSITION and d.symbol not in open_notional_usd:
            problems.append(f"{d.describe()}: no open position in {d.symbol}")
            continue
        if d.kind == "reduce" and d.amount_usd > open_notional_usd[d.symbol]:
            problems.append(f"{d.describe()}: reduction of {d.amount_usd} USD is bigger than the position "
                            f"({open_notional_usd[d.symbol]} USD)")
    if problems:
        raise HfosError("; ".join(problems))


def _touches(a: Directive, b: Directive) -> bool:
    return a.symbol == b.symbol or EVERYTHING in (a.symbol, b.symbol)


def _stops(blocker: Directive, d: Directive) -> bool:
    """Whether risk-reducing `blocker` stands against risk-adding `d`."""
    only = _ONLY_AGAINST.get(blocker.kind)
    return only is None or d.kind in only


def resolve(directives, hierarchy=DEFAULT_HIERARCHY) -> Resolution:
    order = check_hierarchy(hierarchy)
    rank = {layer: i for i, layer in enumerate(order)}
    # Highest layer first; within a layer, risk-reducing first, then a stable order of the rest.
    pending = sorted(directives, key=lambda d: (rank[d.layer], d.adds_risk, d.symbol, d.kind, d.reason,
                                                d.amount_usd, d.trace_id))
    accepted: list[Directive] = []
    overruled: list[Overruled] = []
    for d in pending:
        beaten = None
        for a in accepted:
            if not _touches(a, d):
                continue
            if a.adds_risk != d.adds_risk:
                blocker, other = (a, d) if not a.adds_risk else (d, a)
                if _stops(blocker, other):
                    why = (f"{a.layer} outranks {d.layer} in {' > '.join(order)}: "
                           f"{a.kind} {a.symbol} stands against {d.kind} {d.symbol}")
                    beaten = Overruled(d, a, why)
                    break
            elif a.symbol == d.symbol and a.kind == d.kind:
                beaten = Overruled(d, a, f"superseded: {a.layer} already directs {a.kind} {a.symbol}")
                break
        if beaten is None:
            accepted.append(d)
        else:
            overruled.append(beaten)
    return Resolution(tuple(accepted), tuple(overruled))


def own_directives(*, critical_services=(), drawdown_pct=None, max_drawdown_for_amplification_pct=Decimal(5),
                   trace_id: str = "") -> list[Directive]:
    """HFOS's own rules. `drawdown_pct` None (unknown) blocks amplification: it fails closed."""
    out = []
    critical = sorted(set(critical_services))
    if critical:
        out.append(Directive(HFOS, "block_new_risk", EVERYTHING, f"CRITICAL: {', '.join(critical)}",
                             trace_id=trace_id))
    limit = to_decimal(max_drawdown_for_amplification_pct, "max_drawdown_for_amplification_pct")
    if drawdown_pct is None:
        out.append(Directive(HFOS, "block_amplification", EVERYTHING, "drawdown unknown", trace_id=trace_id))
    else:
        dd = to_decimal(drawdown_pct, "drawdown_pct")
        if dd > limit:
            out.append(Directive(HFOS, "block_amplification", EVERYTHING, f"drawdown {dd}% > {limit}%",
                                 trace_id=trace_id))
    return out
