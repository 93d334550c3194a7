"""Now, on the market's clock.

The simulated market runs ahead of the wall clock at SIM_SPEED_FACTOR > 1 (and stays ahead after
going back to 1): whether a bar has closed is a question for its clock, not for time.time().
An exchange's market runs on the wall clock.
"""
from __future__ import annotations

from datetime import UTC, datetime


def market_now(exchange: str) -> datetime:
    """The simulator's clock for the paper exchange (when a simulated market is seeded), else the
    wall clock. Timezone-aware UTC."""
    if exchange == "paper":
        from trading.simulator.service import SimulatorNotSeeded, simulator_now_ms

        try:
            return datetime.fromtimestamp(simulator_now_ms() / 1000, UTC)
        except SimulatorNotSeeded:
            pass  # paper trading on imported candles: they carry wall-clock times
    return datetime.now(UTC)
