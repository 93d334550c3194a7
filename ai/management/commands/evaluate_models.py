"""manage.py evaluate_models: walk-forward out-of-sample evaluation with costs, against baselines."""
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ai.models import ModelType


class Command(BaseCommand):
    help = ("Walk-forward (rolling) out-of-sample evaluation of the forecasters and their ensemble on the "
            "stored candles, with fees and slippage, against buy-and-hold, momentum and random; writes "
            "var/reports/<timestamp>/ (report.json and plots) and records an EvaluationReport.")

    def add_arguments(self, parser):
        parser.add_argument("--models", nargs="+", default=list(ModelType.values),
                            help="model types, space- or comma-separated (default: all four)")
        parser.add_argument("--folds", type=int, default=4)
        parser.add_argument("--bars", type=int, default=None, help="last N bars per symbol (default: all stored)")
        parser.add_argument("--sample-every", type=int, default=3, help="keep one bar in K as a sample (default 3)")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--max-epochs", type=int, default=None, help="cap for the neural models' epochs")
        parser.add_argument("--mode", choices=["rolling", "expanding"], default="rolling",
                            help="rolling: every fold trains on a window as long as the first fold's (default)")
        parser.add_argument("--horizon", type=int, default=12, help="label and holding horizon in bars")
        parser.add_argument("--exchange", default=None, help="default: MARKET_EXCHANGE")
        parser.add_argument("--timeframe", default="5m")
        parser.add_argument("--taker-fee", type=float, default=None, help="per side, fraction (default 0.0005)")
        parser.add_argument("--slippage", type=float, default=None, help="per side, fraction (default 0.0005)")
        parser.add_argument("--out", default=None, help="reports root (default: REPORTS_DIR or var/reports)")
        parser.add_argument("--no-null-control", action="store_true",
                            help="skip the control run on a simulated null market (nothing planted, same size)")
        parser.add_argument("--no-sizing", action="store_true",
                            help="skip the RL sizing comparison (PPO capped by Kelly vs Kelly-only, out of sample "
                                 "on the simulated demo market)")
        parser.add_argument("--sizing-days", type=int, default=40,
                            help="days of simulated market for the sizing comparison (default 40)")
        parser.add_argument("--sizing-timesteps", type=int, default=20_000,
                            help="PPO timesteps of the sizing comparison's agent (default 20000, as the daily retrain)")
        parser.add_argument("--orchestration", action="store_true",
                            help="add the orchestration ablation (full PBA/PAL/PIL/meta-strategy against each turned "
                                 "off, simulated demo and null markets; a few minutes)")
        parser.add_argument("--orchestration-days", type=int, default=40,
                            help="days of simulated market for the orchestration ablation (default 40)")
        parser.add_argument("--orchestration-seeds", type=int, default=5,
                            help="meta-strategy seeds averaged per configuration in the ablation (default 5)")

    def handle(self, *args, models, folds, bars, sample_every, seed, max_epochs, mode, horizon, exchange, timeframe,
               taker_fee, slippage, out, no_null_control, no_sizing, sizing_days, sizing_timesteps, orchestration,
               orchestration_days, orchestration_seeds, **options):
        from django.conf import settings

        from ai.evaluation.report import format_table, summary_rows, write_report
        from ai.evaluation.walkforward import Costs, EvaluationConfig, evaluate
        from ai.features.dataset import dataset_from_db
        from ai.features.labels import neutral_band
        from ai.features.splits import SplitError
        from ai.models import EvaluationReport
        from trading.marketdata.timeframes import milliseconds

        types = [t.strip() for m in models for t in m.split(",") if t.strip()]
        unknown = [t for t in types if t not in ModelType.values]
        if unknown or not types:
            raise CommandError(f"unknown model type(s): {', '.join(unknown) or '(none)'}; "
                               f"known: {', '.join(ModelType.values)}")
        if folds < 1 or sample_every < 1 or horizon < 1 or (bars is not None and bars < 1):
            raise CommandError("--folds, --sample-every, --horizon and --bars must be positive")
        if sizing_days < 5 or sizing_timesteps < 1:
            raise CommandError("--sizing-days must be at least 5 and --sizing-timesteps positive")
        if orchestration and (orchestration_days < 5 or orchestration_seeds < 1):
            raise CommandError("--orchestration-days must be at least 5 and --orchestration-seeds positive")
        costs = Costs(**{k: v for k, v in (("taker_fee_rate", taker_fee), ("slippage_rate", slippage))
                         if v is not None})
        band = neutral_band(costs.taker_fee_rate, costs.slippage_rate)
        self.stdout.write("building the dataset from stored candles ...")
        # band 0: every bar with a known future is a test sample (trading must not pick bars by their
        # future move); training keeps only moves beyond the fee band (walkforward.py).
        ds = dataset_from_db(exchange or settings.MARKET_EXCHANGE, timeframe, n_bars=bars, horizon=horizon,
                             sample_every=sample_every, band=0.0)
        if len(ds.y) == 0:
            raise CommandError("no samples: seed or import candles first (manage.py seed_market)")
        self.stdout.write(f"dataset: {len(ds.y):,} samples, {len(set(ds.symbol.tolist()))} symbols; "
                          f"excluded: {len(ds.excluded)}")
        neural = ("nhits", "patchtst")
        model_params = {t: {"max_epochs": max_epochs} for t in neural if t in types} if max_epochs else {}
        config = EvaluationConfig(models=tuple(types), n_folds=folds, seed=seed, model_params=model_params,
                                  costs=costs, band=band, bar_ms=milliseconds(timeframe), mode=mode)
        bar = tqdm(total=folds * len(types), desc="evaluate", unit="fit")

        def progress(fold, model_type):
            bar.set_postfix_str(f"fold {fold + 1}/{folds} {model_type}", refresh=False)
            bar.update(1)

        try:
            result = evaluate(ds, config, progress=progress)
        except (SplitError, ValueError) as exc:
            raise CommandError(f"evaluation failed: {exc}") from None
        finally:
            bar.close()
        params = {"models": types, "folds": folds, "bars": bars, "sample_every": sample_every, "seed": seed,
                  "max_epochs": max_epochs, "mode": mode, "horizon": horizon,
                  "exchange": exchange or settings.MARKET_EXCHANGE,
                  "timeframe": timeframe, "taker_fee_rate": costs.taker_fee_rate, "slippage_rate": costs.slippage_rate}
        if not no_null_control:
            self.stdout.write("control: the same pipeline on a simulated null market (nothing planted) ...")
            try:
                result["controls"] = {"null_market": _null_control(ds, config, timeframe, sample_every, horizon)}
            except (SplitError, ValueError) as exc:
                raise CommandError(f"null-market control failed: {exc}") from None
            result["verdict"]["statements"].extend(result["controls"]["null_market"]["statements"])
        if not no_sizing:
            self.stdout.write("RL sizing: PPO capped by Kelly vs Kelly-only, out of sample on the simulated demo "
                              "market ...")
            try:
                result["sizing"] = _sizing(costs=costs, seed=seed, horizon=horizon, days=sizing_days,
                                           timesteps=sizing_timesteps, timeframe=timeframe, say=self.stdout.write)
            except (SplitError, ValueError) as exc:
                raise CommandError(f"sizing comparison failed: {exc}") from None
            result["verdict"]["statements"].extend(result["sizing"]["statements"])
            params.update(sizing_days=sizing_days, sizing_timesteps=sizing_timesteps)
        if orchestration:
            self.stdout.write("orchestration ablation: full against PBA, PAL, PIL or the meta-strategy turned off, "
                              "simulated demo and null markets ...")
            try:
                result["orchestration"] = _orchestration(costs=costs, seed=seed, horizon=horizon,
                                                         days=orchestration_days, n_seeds=orchestration_seeds,
                                                         timeframe=timeframe, say=self.stdout.write)
            except (SplitError, ValueError) as exc:
                raise CommandError(f"orchestration ablation failed: {exc}") from None
            result["verdict"]["statements"].extend(result["orchestration"]["statements"])
            params.update(orchestration_days=orchestration_days, orchestration_seeds=orchestration_seeds)
        folder = write_report(result, root=out, params=params)
        rows = summary_rows(result)
        EvaluationReport.objects.create(created_at=datetime.now(UTC), path=str(folder),
                                        summary={"verdict": result["verdict"], "rows": rows}, params=params)
        self.stdout.write(format_table(rows))
        for line in result["verdict"]["statements"]:
            self.stdout.write(line)
        self.stdout.write(result["verdict"]["headline"])
        self.stdout.write(f"report: {folder}")


def _null_control(ds, config, timeframe: str, sample_every: int, horizon: int) -> dict:
    """The evaluation repeated on a simulated market of the same span and universe size with
    nothing planted (SIM_ALPHA 0): it must find no edge, or the pipeline leaks."""
    from ai.evaluation.walkforward import evaluate
    from ai.features.compute import min_history_bars
    from ai.features.dataset import build_dataset
    from trading.marketdata.timeframes import milliseconds
    from trading.simulator.model import BAR_MS, MarketSimulator
    from trading.simulator.universe import demo_config

    if milliseconds(timeframe) != BAR_MS:
        raise ValueError(f"the null-market control simulates 5m bars, not {timeframe} (use --no-null-control)")
    n_symbols = len(set(ds.symbol.tolist()))
    span_bars = int((ds.t_ms.max() - ds.t_ms.min()) // BAR_MS) + min_history_bars() + horizon + 1
    start = int(ds.t_ms.min()) - min_history_bars() * BAR_MS
    sim_config = demo_config(start - start % BAR_MS, alpha=0.0)
    batch = MarketSimulator(sim_config, config.seed).generate(span_bars)
    symbols = list(batch.symbols)[:n_symbols]
    null_ds = build_dataset({s: batch.ohlcv[s] for s in symbols}, horizon=horizon, band=0.0,
                            sample_every=sample_every, sectors={a.symbol: a.sector for a in sim_config.assets})
    res = evaluate(null_ds, config)
    sig = res["significance"]
    net = sig["net_return_per_period"]
    found = "FINDS AN EDGE: the pipeline leaks" if sig["edge"] else "finds no edge, as it should"
    statements = [f"Null-market control ({len(symbols)} simulated symbols, nothing planted): the ensemble {found}; "
                  f"net return per period {net['mean']:+.4%}, 95% interval [{net['lo']:+.4%}, {net['hi']:+.4%}]; "
                  f"accuracy {sig['accuracy']['accuracy']:.3f} vs majority {sig['accuracy']['majority']:.3f} "
                  f"(p = {sig['accuracy']['p_value']:.3g})."]
    return {"alpha": 0.0, "n_symbols": len(symbols), "n_samples": len(null_ds), "significance": sig,
            "ensemble": {"trading": {k: v for k, v in res["ensemble"]["trading"].items() if k != "period_returns"},
                         "classification": {k: v for k, v in res["ensemble"]["classification"].items()
                                            if k != "calibration"}},
            "baselines": {k: {"total_return": v["trading"]["total_return"]} for k, v in res["baselines"].items()},
            "statements": statements, "edge": bool(sig["edge"]), "span_bars": span_bars}


def _sizing(*, costs, seed: int, horizon: int, days: int, timesteps: int, timeframe: str, say) -> dict:
    """The RL sizing comparison (ai/evaluation/sizing.py) on the demo simulator at SIM_ALPHA,
    seeded with --seed (market and agent), with the run's costs and horizon."""
    from django.conf import settings

    from ai.evaluation.sizing import SizingEvaluationConfig, evaluate_sizing
    from trading.marketdata.timeframes import milliseconds
    from trading.simulator.model import BAR_MS

    if milliseconds(timeframe) != BAR_MS:
        raise ValueError(f"the sizing comparison simulates 5m bars, not {timeframe} (use --no-sizing)")
    config = SizingEvaluationConfig(days=days, market_seed=seed, agent_seed=seed, alpha=float(settings.SIM_ALPHA),
                                    horizon=horizon, agent_timesteps=timesteps, costs=costs)
    return evaluate_sizing(config, progress=lambda msg: say(f"  {msg}"))


def _orchestration(*, costs, seed: int, horizon: int, days: int, n_seeds: int, timeframe: str, say) -> dict:
    """The orchestration ablation (ai/evaluation/orchestration.py) on the demo simulator at
    SIM_ALPHA and on a null market, seeded with --seed, with the run's costs and horizon."""
    import time

    from django.conf import settings

    from ai.evaluation.orchestration import OrchestrationEvaluationConfig, evaluate_orchestration
    from trading.marketdata.timeframes import milliseconds
    from trading.simulator.model import BAR_MS

    if milliseconds(timeframe) != BAR_MS:
        raise ValueError(f"the orchestration ablation simulates 5m bars, not {timeframe} (leave out --orchestration)")
    config = OrchestrationEvaluationConfig(days=days, market_seed=seed, alpha=float(settings.SIM_ALPHA),
                                           horizon=horizon, costs=costs, meta_seeds=tuple(range(seed, seed + n_seeds)))
    started = time.perf_counter()
    return evaluate_orchestration(config, progress=lambda msg: say(f"  [{time.perf_counter() - started:5.0f} s] {msg}"))
