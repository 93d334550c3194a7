"""User strategies: one interface for rule strategies and the AI ensemble.

`base` holds the interface (`Strategy`, `Param`, `Signals`) and the checks every run goes
through (`run_strategy`, `validate_signals`); `loader` finds a strategy by dotted path, in the
strategies folder or among the shipped `examples`; `lookahead` compares a strategy's output on
cut-off bars with its output on the full bars. This package's own module imports nothing, so
that importing `ai.strategies.base` pulls in no framework.
"""
