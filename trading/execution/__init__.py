"""Order execution: the pure planning core (`planning`: client order ids, retry delays,
TWAP/VWAP slicing, SMART strategy choice, slippage and passive limit prices)."""
