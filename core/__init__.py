"""The domain vocabulary every layer shares: enums, Decimal conversion, text limits.

Pure Python: nothing here imports Django, Celery, Redis, ccxt or any app, so the pure cores
(risk rules, execution planning, position math, sizing) and the backtester can use it as is.
"""
