"""The rule strategies that ship with the system, found by file name (`ma_crossover`, `momentum`)."""
