"""Backtest reporting: the figures a run (backtest, paper or live) is judged and compared by."""
