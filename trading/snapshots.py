"""The account snapshot: what the execution side last knew of its account, for readers that
must not touch the exchange themselves (RL sizing on the inference worker).

The execution worker writes it after every fill and every reconciliation
(trading/execution/snapshot.py); it lives in Redis under one key per exchange. A reader gets
None when it is missing or unreadable, and checks its age itself: a sizing decision on an
account state that is unknown or stale is no decision (it fails closed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from core.decimals import ZERO, to_decimal
from qtweb.health.status import redis_client
from qtweb.logging import get_logger

log = get_logger(__name__)

KEY = "qt:account:snapshot:{exchange}"


@dataclass(frozen=True)
class AccountSnapshot:
    exchange: str
    taken_at: datetime  # timezone-aware UTC
    balance_usd: Decimal  # the quote currency's total balance (free + used)
    equity_usd: Decimal
    day_start_equity_usd: Decimal
    exposure_by_symbol: dict[str, Decimal] = field(default_factory=dict)  # signed notional (short < 0)
    exposure_by_sector: dict[str, Decimal] = field(default_factory=dict)  # gross notional
    reason: str = ""  # what wrote it: fill, reconciliation, ...

    @property
    def drawdown(self) -> Decimal:
        """The fall from the UTC day's starting equity, as a fraction (0 when up on the day)."""
        start = self.day_start_equity_usd
        return max(ZERO, (start - self.equity_usd) / start) if start > 0 else ZERO

    @property
    def gross_exposure_usd(self) -> Decimal:
        return sum((abs(v) for v in self.exposure_by_symbol.values()), ZERO)

    @property
    def exposure(self) -> Decimal:
        """Gross exposure as a share of equity."""
        return self.gross_exposure_usd / self.equity_usd if self.equity_usd > 0 else ZERO

    def age_seconds(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.taken_at).total_seconds()

    def to_json(self) -> str:
        return json.dumps({
            "exchange": self.exchange, "taken_at": self.taken_at.isoformat(), "balance_usd": str(self.balance_usd),
            "equity_usd": str(self.equity_usd), "day_start_equity_usd": str(self.day_start_equity_usd),
            "exposure_by_symbol": {k: str(v) for k, v in self.exposure_by_symbol.items()},
            "exposure_by_sector": {k: str(v) for k, v in self.exposure_by_sector.items()}, "reason": self.reason})

    @classmethod
    def from_json(cls, text: str | bytes) -> AccountSnapshot:
        """ValueError naming the field that is missing or wrong."""
        try:
            d = json.loads(text)
            taken_at = datetime.fromisoformat(d["taken_at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"account snapshot is not readable: {exc!r}") from None
        if taken_at.tzinfo is None:
            raise ValueError("account snapshot taken_at is not timezone-aware")
        try:
            return cls(
                exchange=str(d["exchange"]), taken_at=taken_at.astimezone(UTC),
                balance_usd=to_decimal(d["balance_usd"], "balance_usd"),
                equity_usd=to_decimal(d["equity_usd"], "equity_usd"),
                day_start_equity_usd=to_decimal(d["day_start_equity_usd"], "day_start_equity_usd"),
                exposure_by_symbol={k: to_decimal(v, f"exposure of {k}") for k, v in d["exposure_by_symbol"].items()},
                exposure_by_sector={k: to_decimal(v, f"exposure of {k}") for k, v in d["exposure_by_sector"].items()},
                reason=str(d.get("reason", "")))
        except KeyError as exc:
            raise ValueError(f"account snapshot has no {exc.args[0]}") from None


def snapshot_store(snapshot: AccountSnapshot) -> None:
    redis_client().set(KEY.format(exchange=snapshot.exchange), snapshot.to_json())


def snapshot_get(exchange: str) -> AccountSnapshot | None:
    """The last snapshot of `exchange`'s account; None when there is none or it is unreadable
    (logged: a reader then treats the account as unknown)."""
    raw = redis_client().get(KEY.format(exchange=exchange))
    if raw is None:
        return None
    try:
        return AccountSnapshot.from_json(raw)
    except ValueError as exc:
        log.error("account snapshot unreadable", exchange=exchange, error=str(exc))
        return None


def snapshot_forget(exchange: str) -> None:
    redis_client().delete(KEY.format(exchange=exchange))
