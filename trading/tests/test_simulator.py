"""The market simulator: stylized facts measured on generated data (pure model, no database),
reproducibility and state round trips, and the Django side (seed_history, advance)."""
from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from scipy import stats

from trading.simulator.model import BAR_MS, BARS_PER_DAY, FUNDING_INTERVAL_MS, REGIMES, MarketSimulator
from trading.simulator.universe import DEMO_UNIVERSE, demo_config

DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
DAYS = 25
SEED = 42


def _acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).sum() / (x * x).sum())


@pytest.fixture(scope="module")
def config():
    return demo_config(START_MS)


@pytest.fixture(scope="module")
def batch(config):
    return MarketSimulator(config, SEED).generate(DAYS * BARS_PER_DAY)


@pytest.fixture(scope="module")
def perps(config):
    return [i for i, a in enumerate(config.assets) if a.perpetual]


@pytest.fixture(scope="module")
def log_returns(batch):
    return np.diff(np.log(batch.bars[:, :, 4]), axis=1)  # (symbols, bars - 1)


# --- the universe --------------------------------------------------------------------------


def test_demo_universe_has_30_plus_symbols_in_5_plus_sectors_with_perps_and_spot():
    assert len(DEMO_UNIVERSE) >= 30
    assert len({d.sector for d in DEMO_UNIVERSE}) >= 5
    assert any(d.perpetual for d in DEMO_UNIVERSE) and any(not d.perpetual for d in DEMO_UNIVERSE)
    assert len({d.symbol for d in DEMO_UNIVERSE}) == len(DEMO_UNIVERSE)
    for d in DEMO_UNIVERSE:
        # a tick is a small fraction of the price, so rounding does not dominate 5m returns
        assert Decimal(d.tick_size) / Decimal(d.start_price) <= Decimal("0.0005"), d.symbol
        assert d.symbol.endswith(":USDT") == d.perpetual


# --- stylized facts ------------------------------------------------------------------------


def test_5m_returns_have_fat_tails(log_returns):
    kurt = stats.kurtosis(log_returns, axis=1, fisher=False)  # 3 for a normal distribution
    assert np.median(kurt) > 5, kurt
    assert kurt.min() > 4, kurt


def test_volatility_clusters_but_returns_are_nearly_uncorrelated(log_returns, perps):
    abs_acf = np.array([[_acf(np.abs(log_returns[i]), lag) for lag in range(1, 11)] for i in perps]).mean(axis=0)
    ret_acf = np.array([[_acf(log_returns[i], lag) for lag in range(1, 11)] for i in perps]).mean(axis=0)
    assert (abs_acf > 0.05).all(), abs_acf
    assert (np.abs(ret_acf) < 0.05).all(), ret_acf
    assert abs_acf.mean() > 5 * np.abs(ret_acf).mean()


def _big_moves(closes: np.ndarray, k: float = 10.0) -> int:
    """5m returns beyond k robust local standard deviations (median |r| of the 4 h around)."""
    r = pd.DataFrame(np.diff(np.log(closes), axis=1).T).abs()
    local_sd = r.rolling(48, center=True, min_periods=10).median() / 0.6745
    return int((r > k * local_sd).to_numpy().sum())


def test_jumps_exist(config, batch):
    """Moves no GARCH-t diffusion makes: the same seed without jumps has (almost) none."""
    without = MarketSimulator(demo_config(START_MS, jumps_per_day=0.0, market_jumps_per_day=0.0), SEED)
    no_jumps = without.generate(DAYS * BARS_PER_DAY)
    with_jumps = _big_moves(batch.bars[:, :, 4])
    assert batch.jumps.sum() > 0 and not no_jumps.jumps.any()
    assert with_jumps > 50 and with_jumps >= 10 * max(_big_moves(no_jumps.bars[:, :, 4]), 1), with_jumps
    # the bars flagged as jumps are the large moves
    r = np.abs(np.diff(np.log(batch.bars[:, :, 4]), axis=1)).T  # (bars - 1, symbols)
    scale = np.median(r, axis=0)
    flagged = batch.jumps[1:]
    assert np.median((r / scale)[flagged]) > 4 * np.median((r / scale)[~flagged])


def _sector_correlations(config, log_returns, perps) -> tuple[float, float]:
    corr = np.corrcoef(log_returns[perps])
    sectors = [config.assets[i].sector for i in perps]
    within, across = [], []
    for a in range(len(perps)):
        for b in range(a):
            (within if sectors[a] == sectors[b] else across).append(corr[a, b])
    return float(np.mean(within)), float(np.mean(across))


def test_returns_correlate_more_within_a_sector_than_across(config, log_returns, perps):
    within, across = _sector_correlations(config, log_returns, perps)
    assert across > 0.1  # a market factor
    assert within > across + 0.1, (within, across)


def test_volume_rises_with_absolute_returns(batch, log_returns, perps):
    quote_volume = batch.bars[:, 1:, 5] * batch.bars[:, 1:, 4]
    corr = np.array([np.corrcoef(quote_volume[i], np.abs(log_returns[i]))[0, 1] for i in perps])
    assert (corr > 0).all() and corr.mean() > 0.3, corr


def test_volume_follows_an_intraday_profile(batch, perps):
    hours = (batch.open_time_ms // 3_600_000) % 24
    quote_volume = batch.bars[:, :, 5] * batch.bars[:, :, 4]
    hourly = np.array([quote_volume[perps][:, hours == h].mean(axis=1) for h in range(24)])  # (24, symbols)
    ratio = hourly.max(axis=0) / hourly.min(axis=0)
    assert np.median(ratio) > 1.3, ratio
    assert 3 <= int(np.median(hourly.argmin(axis=0))) <= 8  # quiet in the late Asian night


def test_funding_only_for_perpetuals_bounded_every_8h_and_leaning_with_the_trend(config, batch):
    perp_symbols = {a.symbol for a in config.assets if a.perpetual}
    assert set(batch.funding) == perp_symbols
    close_times = batch.open_time_ms + BAR_MS
    expected_times = close_times[close_times % FUNDING_INTERVAL_MS == 0]  # emitted with the bar closing at T
    rates, trends = [], []
    closes = {s: batch.bars[i, :, 4] for i, s in enumerate(batch.symbols)}
    for symbol, events in batch.funding.items():
        np.testing.assert_array_equal(events[:, 0], expected_times)
        assert (np.abs(events[:, 1]) <= 0.003).all()
        last = np.searchsorted(batch.open_time_ms, events[:, 0] - BAR_MS)  # the bar closing at T
        ok = last >= 96
        # the 8h log return up to the funding time (what the rate may know)
        trends.append(np.log(closes[symbol][last[ok]] / closes[symbol][last[ok] - 96]))
        rates.append(events[ok, 1])
    rates, trends = np.concatenate(rates), np.concatenate(trends)
    assert rates.std() > 0 and 0 < np.mean(rates) < 0.0005
    assert np.corrcoef(rates, trends)[0, 1] > 0.3


def test_regimes_switch(batch):
    assert len(set(batch.regime.tolist())) >= 2
    assert 0 < np.count_nonzero(np.diff(batch.regime)) < len(batch.regime) / 20


# --- OHLC, ticks, grid ---------------------------------------------------------------------


def test_ohlc_is_consistent_on_a_utc_5m_grid_and_rounded_to_ticks(config, batch):
    t = batch.open_time_ms
    assert t[0] == START_MS and (np.diff(t) == BAR_MS).all() and (t % BAR_MS == 0).all()
    for i, asset in enumerate(config.assets):
        bars = batch.bars[i]
        o, h, lo, c, v = bars[:, 1], bars[:, 2], bars[:, 3], bars[:, 4], bars[:, 5]
        assert (h >= np.maximum(o, c)).all() and (np.minimum(o, c) >= lo).all() and (lo > 0).all(), asset.symbol
        assert (h > lo).mean() > 0.9, asset.symbol  # bars have a range
        np.testing.assert_array_equal(o[1:], c[:-1])  # open = previous close
        for col in (o, h, lo, c):
            steps = col / asset.tick_size
            assert np.abs(steps - np.rint(steps)).max() < 1e-6, asset.symbol
            # exact decimal representation: Decimal(repr(x)) is a multiple of the tick
            assert Decimal(repr(float(col[-1]))) % Decimal(repr(asset.tick_size)) == 0, asset.symbol
        lots = v / asset.lot_size
        assert (v >= 0).all() and np.abs(lots - np.rint(lots)).max() < 1e-6, asset.symbol


def test_spot_tracks_its_perpetual(config, batch):
    index = {s: i for i, s in enumerate(batch.symbols)}
    for asset in config.assets:
        if asset.tracks:
            spot, perp = batch.bars[index[asset.symbol], :, 4], batch.bars[index[asset.tracks], :, 4]
            assert np.abs(np.log(spot / perp)).max() < 0.01, asset.symbol


# --- reproducibility and state ---------------------------------------------------------------


def test_same_seed_same_path_different_seed_different_path(config):
    a = MarketSimulator(config, 7).generate(500)
    b = MarketSimulator(config, 7).generate(500)
    c = MarketSimulator(config, 8).generate(500)
    np.testing.assert_array_equal(a.bars, b.bars)
    assert all(np.array_equal(a.funding[s], b.funding[s]) for s in a.funding)
    assert not np.array_equal(a.bars[:, :, 4], c.bars[:, :, 4])
    assert (a.bars[:, 1:, 4] != c.bars[:, 1:, 4]).mean() > 0.9


@pytest.mark.parametrize("first", [100, 1, BARS_PER_DAY - 3])  # also across a random-number block boundary
def test_state_round_trip_continues_the_same_path(config, first):
    at = START_MS + (first + 20) * BAR_MS
    whole = MarketSimulator(config, 11)
    whole.inject_regime_switch(at, "high_vol", vol_multiplier=2.0, duration_bars=30)
    expected = whole.generate(first + 50)

    part = MarketSimulator(config, 11)
    part.inject_regime_switch(at, "high_vol", vol_multiplier=2.0, duration_bars=30)
    part.generate(first)
    state = json.loads(json.dumps(part.state_dict()))  # as stored in the database
    restored = MarketSimulator.from_state(config, state)
    tail = restored.generate(50)
    np.testing.assert_array_equal(tail.bars, expected.bars[:, first:])
    np.testing.assert_array_equal(tail.open_time_ms, expected.open_time_ms[first:])
    np.testing.assert_array_equal(tail.regime, expected.regime[first:])


def _bars_sha256(batch) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(batch.bars).tobytes()).hexdigest()


def test_alpha_zero_is_the_market_without_the_planted_effect():
    """Bit for bit the arrays the simulator generated before the effect existed (recorded from
    that code, 9f8c982): at 0 nothing is added and no random number is drawn differently."""
    sim = MarketSimulator(demo_config(1_700_000_100_000 - 1_700_000_100_000 % BAR_MS), 7)
    assert _bars_sha256(sim.generate(600)) == "c1c9f494bf16db9aee777ef9c009671bde391933e4581ecac8aa91cb346dd52d"


def _planted_fit(alpha: float, seed: int = 7, days: int = 30) -> tuple[float, float]:
    """(R^2, t of the peers' coefficient) of next hour's log return on the two signals the
    effect plants: the sector peers' last-hour return net of the market and the symbol's own
    last-hour return net of the market (perpetuals, one non-overlapping hour per row)."""
    config = demo_config(START_MS, alpha=alpha)
    b = MarketSimulator(config, seed).generate(days * BARS_PER_DAY)
    perps = [i for i, a in enumerate(config.assets) if a.perpetual]
    logc = np.log(b.bars[perps, ::12, 4])  # hourly closes: (symbols, hours)
    past, fut = logc[:, 1:-1] - logc[:, :-2], logc[:, 2:] - logc[:, 1:-1]
    excess = past - past.mean(axis=0)
    sectors = np.array([config.assets[i].sector for i in perps])
    rows = []
    for k in range(len(perps)):
        mates = (sectors == sectors[k]) & (np.arange(len(perps)) != k)
        if mates.any():
            rows.append(np.column_stack([excess[mates].mean(axis=0), excess[k], fut[k]]))
    data = np.vstack(rows)
    X = np.column_stack([np.ones(len(data)), data[:, :2]])
    coef, *_ = np.linalg.lstsq(X, data[:, 2], rcond=None)
    resid = data[:, 2] - X @ coef
    r2 = 1 - resid.var() / data[:, 2].var()
    se = np.sqrt(resid.var() * np.linalg.inv(X.T @ X)[1, 1])
    return float(r2), float(coef[1] / se)


def test_the_planted_effect_is_in_the_peers_and_own_returns_with_its_strength():
    off_r2, off_t = _planted_fit(0.0)
    weak_r2, weak_t = _planted_fit(0.3)
    demo_r2, _ = _planted_fit(0.5)
    assert off_r2 < 0.005 and abs(off_t) < 3  # nothing to learn at 0
    assert weak_t > 5  # the peers' last hour predicts the symbol's next
    # stronger with alpha (as it grows, the symbol's own returns carry more of it: its echo)
    assert weak_r2 < demo_r2 < _planted_fit(0.8)[0] and demo_r2 > 0.01


def test_the_planted_effect_reads_only_closed_bars_and_survives_a_state_round_trip():
    config = demo_config(START_MS, alpha=0.3)
    whole = MarketSimulator(config, 5).generate(400)
    part = MarketSimulator(config, 5)
    head = part.generate(250)
    restored = MarketSimulator.from_state(config, json.loads(json.dumps(part.state_dict())))
    np.testing.assert_array_equal(np.concatenate([head.bars, restored.generate(150).bars], axis=1), whole.bars)
    # the effect moves a bar only through the shocks before it: the first bar is alpha-free
    np.testing.assert_array_equal(MarketSimulator(demo_config(START_MS), 5).generate(1).bars, whole.bars[:, :1])
    with pytest.raises(ValueError, match="generated with alpha 0.3"):
        MarketSimulator.from_state(demo_config(START_MS), part.state_dict())


def test_a_state_saved_before_the_effect_still_loads():
    config = demo_config(START_MS)
    sim = MarketSimulator(config, 3)
    sim.generate(10)
    old = {k: v for k, v in sim.state_dict().items() if k not in ("momentum", "alpha")} | {"version": 1}
    np.testing.assert_array_equal(MarketSimulator.from_state(config, old).generate(5).bars, sim.generate(5).bars)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_a_bad_alpha_is_refused_with_its_name(alpha):
    with pytest.raises(ValueError, match="alpha"):
        MarketSimulator(demo_config(START_MS, alpha=alpha), 1)


def test_injected_regime_switch_raises_volatility_by_the_multiplier(config):
    """A permanent break at day 10 with vol x3, against the same seed with the same regime forced
    and no multiplier: identical before, ~3x the realized volatility after."""
    switch_bar = 10 * BARS_PER_DAY
    at = START_MS + switch_bar * BAR_MS
    control, broken = MarketSimulator(config, 5), MarketSimulator(config, 5)
    control.inject_regime_switch(at, "trending", vol_multiplier=1.0)
    broken.inject_regime_switch(at, "trending", vol_multiplier=3.0)
    a, b = control.generate(20 * BARS_PER_DAY), broken.generate(20 * BARS_PER_DAY)
    np.testing.assert_array_equal(a.bars[:, : switch_bar + 1, 1], b.bars[:, : switch_bar + 1, 1])
    assert (b.regime[switch_bar:] == REGIMES.index("trending")).all()

    def realized(x, sl):
        return np.diff(np.log(x.bars[:, sl, 4]), axis=1).std(axis=1)

    after = slice(switch_bar, None)
    ratio_vs_control = realized(b, after) / realized(a, after)
    assert np.median(ratio_vs_control) == pytest.approx(3.0, rel=0.1), ratio_vs_control
    # what a drift detector sees in the broken series alone: after / before
    ratio_in_series = realized(b, after) / realized(b, slice(0, switch_bar))
    assert 1.8 < np.median(ratio_in_series) < 4.5, ratio_in_series


def test_regime_switch_for_a_temporary_period_then_the_chain_resumes(config):
    sim = MarketSimulator(config, 3)
    sim.inject_regime_switch(START_MS + 10 * BAR_MS, "mean_reverting", vol_multiplier=4.0, duration_bars=20)
    b = sim.generate(2 * BARS_PER_DAY)
    r = np.abs(np.diff(np.log(b.bars[:, :, 4]), axis=1))
    assert (b.regime[10:30] == REGIMES.index("mean_reverting")).all()
    assert np.median(r[:, 10:30]) > 2 * np.median(r[:, 40:])


def test_bad_input_is_named(config):
    sim = MarketSimulator(config, 1)
    with pytest.raises(ValueError, match="unknown regime 'sideways'"):
        sim.inject_regime_switch(START_MS + BAR_MS, "sideways")
    with pytest.raises(ValueError, match="not aligned"):
        sim.inject_regime_switch(START_MS + 1000, "high_vol")
    sim.generate(10)
    with pytest.raises(ValueError, match="already generated"):
        sim.inject_regime_switch(START_MS + 5 * BAR_MS, "high_vol")
    other = demo_config(START_MS + BAR_MS)
    with pytest.raises(ValueError, match="starts at"):
        MarketSimulator.from_state(other, sim.state_dict())
    smaller = demo_config(START_MS)
    smaller = type(smaller)(**{**smaller.__dict__, "assets": smaller.assets[:-1]})
    with pytest.raises(ValueError, match="different universe"):
        MarketSimulator.from_state(smaller, sim.state_dict())


# --- the database side ----------------------------------------------------------------------

NOW_MS = START_MS + 2 * 60_000 + 1234  # 00:02:01.234 UTC: the bar 00:00-00:05 is still open


@pytest.mark.django_db
def test_seed_history_stores_the_universe_and_the_models_bars_once():
    from trading.models import Candle, SimulatorState, Symbol
    from trading.simulator import service

    res = service.seed_history(days=1, seed=SEED, now_ms=NOW_MS, speed_factor=1.0)
    assert res.created and res.symbols == len(DEMO_UNIVERSE) and res.bars_per_symbol == BARS_PER_DAY
    symbols = Symbol.objects.filter(exchange="paper")
    assert symbols.count() == len(DEMO_UNIVERSE) and len({s.sector for s in symbols}) >= 5
    for s in symbols:
        s.full_clean()  # unified symbol, base/quote/settle and market type agree
    assert Candle.objects.filter(symbol__exchange="paper", timeframe="5m").count() == len(DEMO_UNIVERSE) * BARS_PER_DAY
    state = SimulatorState.objects.get(name="default")
    assert res.last_open_time_ms == START_MS - BAR_MS  # the last closed bar: 23:55-00:00
    assert res.last_open_time_ms + BAR_MS <= NOW_MS

    # the stored bars are the model's, exactly (with the planted strength the setting gives)
    sim = MarketSimulator(demo_config(START_MS - DAY_MS, alpha=settings.SIM_ALPHA), SEED)
    expected = sim.generate(BARS_PER_DAY).ohlcv["ETH/USDT:USDT"]
    stored = np.array([[float(x) for x in row] for row in Candle.objects.filter(
        symbol__symbol="ETH/USDT:USDT", symbol__exchange="paper").order_by("open_time")
        .values_list("open", "high", "low", "close", "volume")])
    np.testing.assert_array_equal(stored, expected[:, 1:])

    again = service.seed_history(days=1, seed=SEED, now_ms=NOW_MS + DAY_MS)
    assert not again.created
    assert SimulatorState.objects.get(name="default").updated_at == state.updated_at
    assert Symbol.objects.filter(exchange="paper").count() == len(DEMO_UNIVERSE)


@pytest.mark.django_db
def test_advance_never_produces_future_bars_and_is_idempotent():
    from trading.models import Candle, SimulatorState
    from trading.simulator import service

    service.seed_history(days=1, seed=SEED, now_ms=NOW_MS, speed_factor=1.0)
    assert service.advance(now_ms=NOW_MS, speed_factor=1.0).bars_per_symbol == 0  # 00:00 bar still open

    later = START_MS + 17 * 60_000  # 00:17: bars 00:00, 00:05 and 00:10 have closed
    res = service.advance(now_ms=later, speed_factor=1.0)
    assert res.bars_per_symbol == 3
    for rows in res.new_bars.values():
        assert (rows[:, 0] + BAR_MS <= later).all()
    count = Candle.objects.count()
    assert Candle.objects.filter(open_time__gte=service.timeframes.to_datetime(later - BAR_MS)).count() == 0

    again = service.advance(now_ms=later, speed_factor=1.0)
    assert again.bars_per_symbol == 0 and Candle.objects.count() == count
    state = SimulatorState.objects.get(name="default")
    assert service.timeframes.to_ms(state.last_open_time) == START_MS + 2 * BAR_MS

    assert service.advance(n_bars=1, now_ms=later + 3_600_000, speed_factor=1.0).bars_per_symbol == 1
    # catching up on 20 bars goes through ingest()'s COPY path, a few bars through one INSERT
    assert service.advance(now_ms=START_MS + 24 * BAR_MS + 60_000, speed_factor=1.0).bars_per_symbol == 20

    # through the database's JSON the path continued exactly: the stored candles are those of
    # generating the whole day + 24 bars in one go
    expected = MarketSimulator(demo_config(START_MS - DAY_MS, alpha=settings.SIM_ALPHA), SEED).generate(
        BARS_PER_DAY + 24)
    for symbol in ("SOL/USDT:USDT", "1000PEPE/USDT:USDT", "BTC/USDT"):
        stored = np.array([[float(x) for x in row] for row in Candle.objects.filter(
            symbol__symbol=symbol, symbol__exchange="paper").order_by("open_time")
            .values_list("open", "high", "low", "close", "volume")])
        np.testing.assert_array_equal(stored, expected.bars[expected.symbols.index(symbol), :, 1:])
    i = expected.symbols.index("SOL/USDT:USDT")
    np.testing.assert_array_equal(res.new_bars["SOL/USDT:USDT"], expected.bars[i, BARS_PER_DAY:BARS_PER_DAY + 3])


@pytest.mark.django_db
def test_advance_with_a_speed_factor_runs_the_simulated_clock_faster():
    from trading.simulator import service

    service.seed_history(days=1, seed=SEED, now_ms=NOW_MS, speed_factor=60.0)
    # 60x: 15 s of wall time are 15 simulated minutes; the simulated clock is 00:17:01
    res = service.advance(now_ms=NOW_MS + 15_000, speed_factor=60.0)
    assert res.bars_per_symbol == 3 and res.sim_now_ms == NOW_MS + 15 * 60_000
    assert res.last_open_time_ms + BAR_MS <= res.sim_now_ms
    assert service.simulator_now_ms(now_ms=NOW_MS + 15_000) == res.sim_now_ms
    # a demo left alone for an hour resumes with at most DEMO_MAX_CATCH_UP_BARS, not 720 bars
    res = service.advance(now_ms=NOW_MS + 3_600_000, speed_factor=60.0)
    assert res.bars_per_symbol == service.DEMO_MAX_CATCH_UP_BARS
    assert service.advance(now_ms=NOW_MS + 3_600_000, speed_factor=60.0).bars_per_symbol == 0


@pytest.mark.django_db
def test_advance_for_feed_returns_new_bars_or_the_coarser_bars_they_complete():
    from trading.exchanges.errors import BadTimeframe
    from trading.marketdata.timeframes import resample
    from trading.simulator import service

    service.seed_history(days=1, seed=SEED, now_ms=NOW_MS, speed_factor=1.0)
    with pytest.raises(BadTimeframe, match="1m"):
        service.advance_for_feed(timeframe="1m", now_ms=NOW_MS, speed_factor=1.0)
    five = service.advance_for_feed(timeframe="5m", now_ms=START_MS + 31 * 60_000, speed_factor=1.0)
    assert {len(rows) for rows in five.values()} == {6} and len(five) == len(DEMO_UNIVERSE)
    assert service.advance_for_feed(timeframe="1h", now_ms=START_MS + 59 * 60_000, speed_factor=1.0) == {}
    hourly = service.advance_for_feed(timeframe="1h", now_ms=START_MS + 61 * 60_000, speed_factor=1.0)
    expected = MarketSimulator(demo_config(START_MS - DAY_MS, alpha=settings.SIM_ALPHA), SEED).generate(
        BARS_PER_DAY + 12).ohlcv
    assert set(hourly) == set(expected)
    for symbol, rows in hourly.items():
        np.testing.assert_array_equal(rows, resample(expected[symbol][-12:], "5m", "1h"))
        assert rows[0, 0] == START_MS


@pytest.mark.django_db
def test_advance_without_history_says_what_to_do():
    from trading.simulator import service

    with pytest.raises(service.SimulatorNotSeeded, match="seed_market"):
        service.advance(now_ms=NOW_MS)


@pytest.mark.django_db
def test_seed_market_command_is_idempotent_unless_forced(capsys):
    from django.core.management import call_command

    from trading.models import Candle, SimulatorState

    call_command("seed_market", "--days", "1", "--seed", "3", "--no-progress")
    first = SimulatorState.objects.get(name="default")
    call_command("seed_market", "--days", "1", "--seed", "4", "--no-progress")
    assert "nothing done" in capsys.readouterr().out
    assert SimulatorState.objects.get(name="default").seed == 3
    call_command("seed_market", "--days", "1", "--seed", "4", "--force", "--no-progress")
    assert SimulatorState.objects.get(name="default").seed == 4
    assert SimulatorState.objects.get(name="default").pk != first.pk
    assert Candle.objects.filter(symbol__exchange="paper").count() == len(DEMO_UNIVERSE) * BARS_PER_DAY
