"""Positions: the pure math core (`math`: PnL, average entry, ATR stops, trailing stops,
break-even and exit detection on a bar)."""
