"""The demo trades and learns on its own (slow: about 10-15 minutes; `make system`).

A fresh `make run` with SIM_SPEED_FACTOR=60, as a new user starts it, with no manual action:
its first order driven by an AI signal within 10 minutes of the workers reporting HEALTHY; then
positions closed by their exits, and each `position.closed` reaching RL sizing (an experience
row) and the learning manager (a prediction outcome joined to the position); predictions
resolved and a drift check recorded.
"""
import pytest

from tests.support import demo

# Up to 15 minutes for install-free start, the first order, the first close and what follows.
pytestmark = [pytest.mark.system, pytest.mark.timeout(2700)]

FIRST_ORDER_WITHIN_SECONDS = 600  # the issue's promise, from the workers' HEALTHY
# An entry's stop and target are a few 1h ATRs away; at speed 60 an hour passes in a minute.
FIRST_CLOSE_WITHIN_SECONDS = 900
LEARNING_SEES_IT_WITHIN_SECONDS = 180  # the consumers run within seconds; resolution every minute


def test_a_fresh_demo_trades_on_its_own_and_its_closed_positions_reach_sizing_and_learning():
    busy = demo.ports_in_use()
    if busy:
        pytest.skip(f"ports {busy} are in use (another make run?)")
    with demo.DemoRun(speed=60) as run:
        up = run.wait("workers_up", demo.healthy, timeout=900)
        assert up is not None, "workers never reported HEALTHY:\n" + run.log_tail()
        order = run.wait("first_ai_order", demo.FIRST_AI_ORDER, timeout=FIRST_ORDER_WITHIN_SECONDS)
        assert order is not None, (f"no AI-driven order within {FIRST_ORDER_WITHIN_SECONDS} s of HEALTHY:\n"
                                   + run.log_tail())
        assert run.query(demo.FIRST_TRADE_SIGNAL)  # it was a BUY or SELL at the policy's threshold
        closed = run.wait("first_position_closed", demo.FIRST_POSITION_CLOSED, timeout=FIRST_CLOSE_WITHIN_SECONDS)
        assert closed is not None, "no position closed by its exits:\n" + run.log_tail()
        assert run.wait("rl_experience", demo.RL_EXPERIENCE, timeout=LEARNING_SEES_IT_WITHIN_SECONDS)
        assert run.wait("outcome_joined", demo.OUTCOME_JOINED_TO_POSITION, timeout=LEARNING_SEES_IT_WITHIN_SECONDS)
        assert run.wait("outcome_resolved", demo.OUTCOME_RESOLVED, timeout=LEARNING_SEES_IT_WITHIN_SECONDS)
        assert run.wait("drift_checked", demo.DRIFT_CHECKED, timeout=LEARNING_SEES_IT_WITHIN_SECONDS)
        print({k: round(v) for k, v in run.marks.items()})
