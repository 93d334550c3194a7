"""The paper exchange: the system's default backend (simulated fills, state in the database).

- engine.py: the pure fill model (fees, slippage, partial fills, limit crossing, latency,
  isolated margin, liquidation, funding) — the formulas are documented there;
- ledger.py: an account's state inside one locked transaction (lock, fills, writes);
- services.py: create_account, order placement and cancellation, leverage;
- bars.py: on_new_bars / process_bar, which the live feed calls when bars arrive
  (resting orders, liquidations, funding);
- backend.py: PaperGateway, the ExchangeGateway implementation.

Imports of Django models are deferred so that `engine` stays importable without Django.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trading.exchanges.paper.backend import PaperGateway
    from trading.exchanges.paper.bars import BarReport, on_new_bars, process_bar
    from trading.exchanges.paper.services import create_account

__all__ = ["PaperGateway", "BarReport", "create_account", "on_new_bars", "process_bar"]


def __getattr__(name: str) -> Any:
    if name == "PaperGateway":
        from trading.exchanges.paper.backend import PaperGateway

        return PaperGateway
    if name in ("BarReport", "on_new_bars", "process_bar"):
        from trading.exchanges.paper import bars

        return getattr(bars, name)
    if name == "create_account":
        from trading.exchanges.paper.services import create_account

        return create_account
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
