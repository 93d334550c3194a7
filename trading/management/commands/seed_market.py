"""manage.py seed_market [--days 60] [--seed 42] [--alpha 0.3] [--force]: the simulated market's history."""
from django.core.management.base import BaseCommand, CommandError

from trading.simulator import service


class Command(BaseCommand):
    help = ("Create the paper exchange's demo universe and generate its 5m history with the market simulator "
            "(skipped when history exists, unless --force). Progress is shown on stderr.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=service.DEFAULT_HISTORY_DAYS)
        parser.add_argument("--seed", type=int, default=None, help="default: SIM_SEED (42)")
        parser.add_argument("--alpha", type=float, default=None,
                            help="strength of the planted effect, 0 to 1 (default: SIM_ALPHA; 0: none)")
        parser.add_argument("--force", action="store_true", help="replace existing simulated history and state")
        parser.add_argument("--name", default=service.SIMULATOR_NAME, help="simulator name (default: default)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, days, seed, alpha, force, name, no_progress, **options):
        if days < 1:
            raise CommandError("--days must be at least 1")
        if seed is None:
            from django.conf import settings

            seed = settings.SIM_SEED
        if seed < 0:
            raise CommandError("--seed must be >= 0")
        if alpha is not None and not 0 <= alpha <= 1:
            raise CommandError(f"--alpha must be from 0 to 1, got {alpha}")
        result = service.seed_history(days=days, seed=seed, force=force, name=name, alpha=alpha,
                                      show_progress=not no_progress and options.get("verbosity", 1) > 0)
        if not result.created:
            self.stdout.write(f"simulator {name!r} already has history (last bar "
                              f"{_fmt(result.last_open_time_ms)}); nothing done (use --force to replace it)")
            return
        self.stdout.write(
            f"seeded {result.symbols} symbols x {result.bars_per_symbol} bars of 5m = {result.rows:,} candles "
            f"from {_fmt(result.first_open_time_ms)} to {_fmt(result.last_open_time_ms)} "
            f"in {result.seconds:.1f} s (seed {seed})"
        )


def _fmt(ms: int | None) -> str:
    from trading.marketdata.timeframes import to_datetime

    return "-" if ms is None else f"{to_datetime(ms):%Y-%m-%d %H:%M}Z"
