"""The offline default market: a seeded simulator (`model`, pure numpy), the demo universe
(`universe`) and the Django side that seeds history and advances it live (`service`)."""
