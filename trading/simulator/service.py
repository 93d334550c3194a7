"""The simulated market in the database: seed its history, advance it as time passes.

One `SimulatorState` row (name "default") holds the model state (trading/simulator/model.py)
as JSON, the clock and the latest funding rates; `advance()` locks it, continues the same path
from it, and stores the new candles and the new state in one transaction. So any worker, in
any process, continues exactly where the last one stopped, and two workers advancing at the
same moment produce each bar once.

Time. The simulator has a clock:

    sim_now_ms = sim_anchor_ms + (wall_now_ms - wall_anchor_ms) * speed_factor

anchored at seeding (both anchors = the wall clock then). A bar with open time T is
generated once T + 5m <= sim_now_ms: a closed bar, never one from the future of the
simulator's clock.

- speed_factor 1 (the default): the simulator's clock is the wall clock; candles carry real
  UTC times and advance() catches up on everything missed while nothing ran (at most
  MAX_BARS_PER_ADVANCE per call; the next call continues).
- speed_factor > 1, for demos: `SIM_SPEED_FACTOR=60` gives one 5m bar every 5 s of wall time.
  The simulated clock then runs ahead of the wall clock and candle times lie in the wall
  clock's future: consumers must ask `simulator_now_ms()`, not time.time(), whether a bar is
  closed. A demo clock that nobody advanced for a while is paused, not raced: at most
  DEMO_MAX_CATCH_UP_BARS bars are produced at once and the missed simulated time is dropped.
- A change of speed factor re-anchors the clock at the current simulated time, so the
  simulated clock never jumps (going back to 1 after a fast demo leaves it ahead of the wall
  clock by what the demo gained; `seed_market --force` realigns it).

The speed factor comes from the `speed_factor` argument, else `settings.SIM_SPEED_FACTOR`,
else 1.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction
from tqdm import tqdm

from core.decimals import to_decimal
from trading.exchanges.errors import BadTimeframe
from trading.marketdata import selectors, timeframes
from trading.marketdata.ingest import ingest
from trading.models import Candle, SimulatorState, Symbol
from trading.simulator.model import BAR_MS, BARS_PER_DAY, MarketSimulator, SimBatch
from trading.simulator.universe import PAPER_EXCHANGE, demo_config, symbols_upsert

SIMULATOR_NAME = "default"
TIMEFRAME = "5m"
DEFAULT_SEED = 42
DEFAULT_HISTORY_DAYS = 60
# One week of bars per advance() at most: a transaction of ~12k candle rows, well under a second
# of COPY; a longer outage is caught up over the next calls.
MAX_BARS_PER_ADVANCE = 7 * BARS_PER_DAY
# Demo mode (speed > 1): one simulated hour at most at once; a demo resumes, it does not race.
DEMO_MAX_CATCH_UP_BARS = 12
# History is generated and stored ten days at a time: bounded memory (~40 symbols x 2880 bars),
# still few COPY round trips.
SEED_CHUNK_BARS = 10 * BARS_PER_DAY
# advance() stores up to a simulated hour in one multi-row INSERT (<= ~500 rows), more via
# ingest()'s COPY; batches of 2000 rows keep a statement's parameters (7 per row) well under
# PostgreSQL's 65535.
LIVE_INSERT_MAX_BARS = 12
LIVE_INSERT_BATCH_ROWS = 2000
# Funding events kept per perpetual in the state: three days (9 events at 8 h).
FUNDING_KEEP = 9


class SimulatorNotSeeded(Exception):
    """No stored history for this simulator: an operator runs `manage.py seed_market`. Not
    recoverable by retrying."""


@dataclass(frozen=True)
class SeedResult:
    created: bool  # False: history existed and force was not given, nothing done
    symbols: int
    bars_per_symbol: int
    rows: int
    first_open_time_ms: int | None
    last_open_time_ms: int | None
    seconds: float


@dataclass
class AdvanceResult:
    bars_per_symbol: int
    sim_now_ms: int
    first_open_time_ms: int | None = None
    last_open_time_ms: int | None = None
    new_bars: dict[str, np.ndarray] = field(default_factory=dict)  # symbol -> [t, o, h, l, c, v] rows
    funding: dict[str, np.ndarray] = field(default_factory=dict)  # perpetual -> [funding_time_ms, rate] rows


def _wall_ms() -> int:
    return int(time.time() * 1000)


def speed_factor_get(speed_factor: float | None = None) -> float:
    value = float(speed_factor if speed_factor is not None else getattr(settings, "SIM_SPEED_FACTOR", 1.0) or 1.0)
    if value <= 0:
        raise ValueError(f"SIM_SPEED_FACTOR must be positive, got {value}")
    return value


def sim_clock_ms(clock: dict, wall_ms: int) -> int:
    """The simulated time at wall time `wall_ms` (see the module docstring)."""
    return int(clock["sim_anchor_ms"] + (wall_ms - clock["wall_anchor_ms"]) * clock["speed_factor"])


def _reclock(clock: dict, wall_ms: int, speed: float) -> dict:
    if clock["speed_factor"] == speed:
        return clock
    return {"wall_anchor_ms": wall_ms, "sim_anchor_ms": sim_clock_ms(clock, wall_ms), "speed_factor": speed}


def _load(state: dict) -> MarketSimulator:
    model = state["model"]
    return MarketSimulator.from_state(demo_config(int(model["start_time_ms"]), alpha=float(model.get("alpha", 0.0))),
                                      model)


def _symbols(sim: MarketSimulator) -> list[Symbol]:
    return selectors.resolve_symbols(sim.symbols, PAPER_EXCHANGE)


def _store(symbols: list[Symbol], batch: SimBatch, tick=None) -> int:
    rows = 0
    for sym, arr in zip(symbols, batch.bars, strict=True):
        ingest(sym, TIMEFRAME, arr)
        rows += len(arr)
        if tick is not None:
            tick(len(arr))
    return rows


def _store_live(symbols: list[Symbol], batch: SimBatch) -> int:
    """A few bars of every symbol in one INSERT ... ON CONFLICT: ingest() costs ~5 round trips
    per symbol (COPY staging), which made a 1-bar advance ~120 ms instead of ~10 ms. The rows
    satisfy ingest's checks by construction (tested in trading/tests/test_simulator.py)."""
    objs = [
        Candle(symbol=sym, timeframe=TIMEFRAME, open_time=timeframes.to_datetime(int(t)),
               open=to_decimal(o, "open"), high=to_decimal(h, "high"), low=to_decimal(lo, "low"),
               close=to_decimal(c, "close"), volume=to_decimal(v, "volume"))
        for sym, arr in zip(symbols, batch.bars, strict=True)
        for t, o, h, lo, c, v in arr
    ]
    Candle.objects.bulk_create(objs, batch_size=LIVE_INSERT_BATCH_ROWS, update_conflicts=True,
                               unique_fields=["symbol", "timeframe", "open_time"],
                               update_fields=["open", "high", "low", "close", "volume"])
    return len(objs)


def _merge_funding(kept: dict, batch: SimBatch) -> dict:
    out = {}
    for sym, rows in batch.funding.items():
        merged = [*kept.get(sym, []), *([int(t), float(r)] for t, r in rows)]
        out[sym] = merged[-FUNDING_KEEP:]
    return out


# --- services ------------------------------------------------------------------------------


def seed_history(*, days: int = DEFAULT_HISTORY_DAYS, seed: int = DEFAULT_SEED, force: bool = False,
                 name: str = SIMULATOR_NAME, now_ms: int | None = None, speed_factor: float | None = None,
                 show_progress: bool = False, alpha: float | None = None) -> SeedResult:
    """Create the demo universe's Symbol rows and `days` of 5m history ending at the last bar
    closed by now (the wall clock), and store the simulator's state. Does nothing when this
    simulator already has history, unless `force` (which replaces the 5m candles of the demo
    symbols and the state). All in one transaction: a failed seed leaves nothing behind.
    `alpha`: the planted effect's strength (trading/simulator/model.py), default SIM_ALPHA; the
    market keeps it for as long as it is advanced."""
    if days < 1:
        raise ValueError("days must be >= 1")
    t0 = time.perf_counter()
    wall = now_ms if now_ms is not None else _wall_ms()
    speed = speed_factor_get(speed_factor)
    existing = SimulatorState.objects.filter(name=name).first()
    if existing is not None and not force:
        return SeedResult(False, len(existing.state["model"]["symbols"]), 0, 0, None,
                          timeframes.to_ms(existing.last_open_time) if existing.last_open_time else None,
                          time.perf_counter() - t0)
    end = timeframes.floor_ms(wall, TIMEFRAME)  # the last bar closes at `end` <= now
    n_bars = days * BARS_PER_DAY
    start = end - n_bars * BAR_MS
    alpha = float(settings.SIM_ALPHA if alpha is None else alpha)
    sim = MarketSimulator(demo_config(start, alpha=alpha), seed)
    with transaction.atomic():
        symbols_upsert(exchange=PAPER_EXCHANGE)
        symbols = _symbols(sim)
        if force:
            Candle.objects.filter(symbol__in=symbols, timeframe=TIMEFRAME).delete()
            SimulatorState.objects.filter(name=name).delete()
        funding: dict = {}
        rows = 0
        with tqdm(total=n_bars * len(symbols), unit="rows", unit_scale=True, desc="seed market",
                  disable=not show_progress, mininterval=0.5) as bar:
            done = 0
            while done < n_bars:
                batch = sim.generate(min(SEED_CHUNK_BARS, n_bars - done))
                rows += _store(symbols, batch, bar.update)
                funding = _merge_funding(funding, batch)
                done += len(batch)
        state = {"model": sim.state_dict(),
                 "clock": {"wall_anchor_ms": wall, "sim_anchor_ms": wall, "speed_factor": speed},
                 "funding": funding}
        last_open = sim.next_open_time_ms - BAR_MS
        SimulatorState.objects.create(name=name, seed=seed, last_open_time=timeframes.to_datetime(last_open),
                                      state=state)
    return SeedResult(True, len(symbols), n_bars, rows, start, last_open, time.perf_counter() - t0)


def advance(n_bars: int | None = None, *, name: str = SIMULATOR_NAME, now_ms: int | None = None,
            speed_factor: float | None = None) -> AdvanceResult:
    """Generate and store the bars the simulator's clock has closed since the last call (at most
    `n_bars`; None: all that are due, up to MAX_BARS_PER_ADVANCE), with the new state, in one
    transaction. Calling again at the same moment adds nothing."""
    if n_bars is not None and n_bars < 0:
        raise ValueError("n_bars must be >= 0")
    wall = now_ms if now_ms is not None else _wall_ms()
    speed = speed_factor_get(speed_factor)
    with transaction.atomic():
        row = SimulatorState.objects.select_for_update().filter(name=name).first()
        if row is None:
            raise SimulatorNotSeeded(f"simulator {name!r} has no history: run `manage.py seed_market` first")
        state = row.state
        clock = _reclock(state["clock"], wall, speed)
        sim = _load(state)
        next_open = sim.next_open_time_ms
        due = max(0, (sim_clock_ms(clock, wall) - next_open) // BAR_MS)
        if speed > 1 and due > DEMO_MAX_CATCH_UP_BARS:
            # a paused demo: drop the simulated time nobody advanced through
            clock = {**clock, "sim_anchor_ms": clock["sim_anchor_ms"] - (due - DEMO_MAX_CATCH_UP_BARS) * BAR_MS}
            due = DEMO_MAX_CATCH_UP_BARS
        n = min(due, MAX_BARS_PER_ADVANCE, due if n_bars is None else n_bars)
        sim_now = sim_clock_ms(clock, wall)
        if n == 0:
            if clock != state["clock"]:
                row.state = {**state, "clock": clock}
                row.save(update_fields=["state", "updated_at"])
            return AdvanceResult(0, sim_now)
        batch = sim.generate(n)
        symbols = _symbols(sim)
        if n <= LIVE_INSERT_MAX_BARS:
            _store_live(symbols, batch)
        else:
            _store(symbols, batch)
        row.state = {"model": sim.state_dict(), "clock": clock,
                     "funding": _merge_funding(state.get("funding", {}), batch)}
        last_open = int(batch.open_time_ms[-1])
        row.last_open_time = timeframes.to_datetime(last_open)
        row.save(update_fields=["state", "last_open_time", "updated_at"])
    return AdvanceResult(n, sim_now, int(batch.open_time_ms[0]), last_open, batch.ohlcv,
                         {s: f for s, f in batch.funding.items() if len(f)})


def advance_for_feed(*, timeframe: str = TIMEFRAME, name: str = SIMULATOR_NAME, now_ms: int | None = None,
                     speed_factor: float | None = None) -> dict[str, np.ndarray]:
    """advance(), then the bars the live feed publishes: the new 5m rows, or for a coarser
    timeframe the bars of that timeframe the new 5m bars completed (resampled from storage)."""
    step = timeframes.milliseconds(timeframe)
    if step < BAR_MS or step % BAR_MS:
        raise BadTimeframe(f"the simulator generates {TIMEFRAME} bars; it cannot serve {timeframe}")
    result = advance(name=name, now_ms=now_ms, speed_factor=speed_factor)
    if timeframe == TIMEFRAME or not result.bars_per_symbol:
        return result.new_bars
    first_new, end = result.first_open_time_ms, result.last_open_time_ms + BAR_MS
    factor = step // BAR_MS
    symbols = selectors.resolve_symbols(list(result.new_bars), PAPER_EXCHANGE)
    raw = selectors.last_bars([s.pk for s in symbols], TIMEFRAME, factor * (result.bars_per_symbol // factor + 2))
    out = {}
    for sym in symbols:
        res = timeframes.resample(raw[sym.pk], TIMEFRAME, timeframe)
        closes = res[:, 0] + step
        sel = res[(closes > first_new) & (closes <= end)]
        if len(sel):
            out[sym.symbol] = sel
    return out


def regime_switch_schedule(*, at_open_time_ms: int, regime: str, vol_multiplier: float = 1.0, drift: float = 0.0,
                           duration_bars: int | None = None, name: str = SIMULATOR_NAME) -> None:
    """Schedule a structural break in the stored simulator (see MarketSimulator.inject_regime_switch)."""
    with transaction.atomic():
        row = SimulatorState.objects.select_for_update().filter(name=name).first()
        if row is None:
            raise SimulatorNotSeeded(f"simulator {name!r} has no history: run `manage.py seed_market` first")
        sim = _load(row.state)
        sim.inject_regime_switch(at_open_time_ms, regime, vol_multiplier=vol_multiplier, drift=drift,
                                 duration_bars=duration_bars)
        row.state = {**row.state, "model": sim.state_dict()}
        row.save(update_fields=["state", "updated_at"])


# --- selectors -----------------------------------------------------------------------------


def simulator_now_ms(*, name: str = SIMULATOR_NAME, now_ms: int | None = None) -> int:
    """The simulator's clock (equal to the wall clock at speed factor 1)."""
    row = SimulatorState.objects.filter(name=name).only("state").first()
    if row is None:
        raise SimulatorNotSeeded(f"simulator {name!r} has no history: run `manage.py seed_market` first")
    return sim_clock_ms(row.state["clock"], now_ms if now_ms is not None else _wall_ms())


def funding_rates_get(*, name: str = SIMULATOR_NAME) -> dict[str, list[tuple[int, float]]]:
    """The last few funding events per perpetual: [(funding_time_ms, rate), ...], oldest first."""
    row = SimulatorState.objects.filter(name=name).only("state").first()
    if row is None:
        return {}
    return {s: [(int(t), float(r)) for t, r in v] for s, v in row.state.get("funding", {}).items()}
