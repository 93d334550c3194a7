"""A fresh demo, as a new user starts it, to its first AI-driven order.

    .venv/bin/python -m bench.bench_demo_first_order [--speed 60] [--timeout 900]

Clones the committed HEAD into a temporary folder, runs `make run` there with
SIM_SPEED_FACTOR=<speed> and no DATABASE_URL/REDIS_URL (SQLite and the embedded Redis, as on a
fresh machine; the clone reuses this checkout's .venv, so installing is not timed), and polls
its database every 2 s (tests/support/demo.py). Prints, from the start of `make run`: the
workers up (every worker's /health answers), the first signal.generated with an action other
than HOLD, the first order of an intent whose source is an AI signal, and (with --until-closed)
the first position.closed; then `make stop`. Ports 8000-8003 and 6390 must be free.
"""
from __future__ import annotations

import argparse
import sys

from tests.support import demo


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--until-closed", action="store_true", help="also wait for the first position.closed")
    args = ap.parse_args()
    with demo.DemoRun(speed=args.speed) as run:
        steps = [("workers_up", demo.healthy), ("first_trade_signal", demo.FIRST_TRADE_SIGNAL),
                 ("first_ai_order", demo.FIRST_AI_ORDER)]
        if args.until_closed:
            steps.append(("first_position_closed", demo.FIRST_POSITION_CLOSED))
        for name, check in steps:
            at = run.wait(name, check, timeout=max(1.0, args.timeout - run.elapsed()))
            seen = f"{at:.0f} s" if at else "not seen"
            print(f"[{run.elapsed():6.0f}s] {name.replace('_', ' ')}: {seen}", file=sys.stderr)
            if at is None:
                break
        marks = dict(run.marks)
    print("| from `make run` start | seconds |")
    print("| --- | --- |")
    for name, _ in steps:
        print(f"| {name.replace('_', ' ')} | {marks[name]:.0f} |" if name in marks
              else f"| {name.replace('_', ' ')} | not within {args.timeout:.0f} s |")
    if "first_ai_order" in marks and "workers_up" in marks:
        print(f"\nworkers up -> first AI-driven order: {marks['first_ai_order'] - marks['workers_up']:.0f} s "
              f"(speed {args.speed:g})")
    return 0 if "first_ai_order" in marks else 1


if __name__ == "__main__":
    raise SystemExit(main())
