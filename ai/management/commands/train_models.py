"""manage.py train_models: train the forecasters on the stored market, register and promote."""
import dataclasses

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ai.models import ModelType


class Command(BaseCommand):
    help = ("Train the forecasters on stored candles (purged time split), save artifacts under "
            "var/models/, register them as challengers and promote those that beat their champion.")

    def add_arguments(self, parser):
        parser.add_argument("--models", default=",".join(ModelType.values),
                            help=f"comma-separated model types (default: all of {', '.join(ModelType.values)})")
        parser.add_argument("--exchange", default=None, help="default: MARKET_EXCHANGE")
        parser.add_argument("--timeframe", default="5m")
        parser.add_argument("--bars", type=int, default=None, help="last N bars per symbol (default: all stored)")
        parser.add_argument("--sample-every", type=int, default=3, help="keep one bar in N as a sample (default 3)")
        parser.add_argument("--horizon", type=int, default=12, help="label horizon in bars (default 12)")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--promote", choices=["if_better", "never", "always"], default="if_better")
        parser.add_argument("--max-epochs", type=int, default=None, help="cap for the neural models' epochs")

    def handle(self, *args, models, exchange, timeframe, bars, sample_every, horizon, seed, promote, max_epochs,
               **options):
        from django.conf import settings

        from ai.features.dataset import dataset_from_db
        from ai.features.labels import DEFAULT_BAND
        from ai.training import train_and_register

        types = [m.strip() for m in models.split(",") if m.strip()]
        unknown = [t for t in types if t not in ModelType.values]
        if unknown:
            raise CommandError(f"unknown model type(s): {', '.join(unknown)}; known: {', '.join(ModelType.values)}")
        if sample_every < 1 or horizon < 1 or (bars is not None and bars < 1):
            raise CommandError("--sample-every, --horizon and --bars must be positive")
        self.stdout.write("building the dataset from stored candles ...")
        # Every bar with a known future, then the samples beyond the fee band for training: the
        # unselected rows are the drift reference (what live rows will be compared with).
        everything = dataset_from_db(exchange or settings.MARKET_EXCHANGE, timeframe, n_bars=bars, horizon=horizon,
                                     sample_every=sample_every, band=0.0)
        reference = everything.X_tab
        ds = dataclasses.replace(everything.take(np.flatnonzero(np.abs(everything.fwd_log_return) > DEFAULT_BAND)),
                                 band=DEFAULT_BAND)
        del everything
        if len(ds.y) == 0:
            raise CommandError("no training samples: seed or import candles first (manage.py seed_market)")
        self.stdout.write(f"dataset: {len(ds.y):,} samples, {len(ds.feature_names)} features, "
                          f"{len(set(ds.symbol.tolist()))} symbols; excluded: {len(ds.excluded)}")
        params = {t: {"max_epochs": max_epochs} for t in ("nhits", "patchtst")} if max_epochs else None
        bars_by_type: dict[str, tqdm] = {}

        def progress(model_type, done, total, info):
            bar = bars_by_type.get(model_type)
            if bar is None:
                bar = bars_by_type[model_type] = tqdm(total=total, desc=f"train {model_type}", unit="step")
            bar.n = done
            bar.set_postfix({k: round(v, 4) for k, v in info.items() if isinstance(v, int | float)}, refresh=True)

        try:
            outcomes = train_and_register(ds, model_types=types, seed=seed, promote=promote, params=params,
                                          progress=progress, reference_x_tab=reference)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        finally:
            for bar in bars_by_type.values():
                bar.close()
        for o in outcomes:
            m = o.metrics
            self.stdout.write(f"{o.model_version}: log-loss {m.get('log_loss', float('nan')):.4f}, accuracy "
                              f"{m.get('accuracy', float('nan')):.3f} (majority {m.get('majority_accuracy', 0):.3f}), "
                              f"{'PROMOTED' if o.promoted else 'not promoted'}: {o.reason}")
