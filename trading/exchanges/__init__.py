"""The exchange gateway: one interface in the shape of ccxt's unified API.

Backends: `paper` (the default, trading/exchanges/paper/) and any ccxt exchange
(trading/exchanges/ccxt_backend.py). Only this package imports ccxt.
"""
