"""manage.py lookahead_analysis: does a strategy's output change when future bars are cut off?"""
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Run a strategy on a symbol's stored bars, then on the same bars cut at several points, and "
            "report every bar and column (indicator or signal) whose value on a cut differs from the full "
            "run: a value that changes when later bars vanish read the future. Exit status 1 when any differs.")

    def add_arguments(self, parser):
        parser.add_argument("--strategy", required=True,
                            help="a file name in STRATEGIES_DIR or a shipped one (ma_crossover, momentum, ensemble), "
                                 "a dotted path (pkg.module or pkg.module:Class) or a .py file")
        parser.add_argument("--symbol", default=None, help="unified symbol (default: the first active symbol)")
        parser.add_argument("--exchange", default=None, help="default: MARKET_EXCHANGE")
        parser.add_argument("--timeframe", default=None, help="default: the strategy's timeframe")
        parser.add_argument("--bars", type=int, default=2000, help="the last N stored bars (default 2000)")
        parser.add_argument("--cuts", type=int, default=20, help="how many cut points (default 20)")
        parser.add_argument("--params", nargs="*", default=[], metavar="NAME=VALUE",
                            help="strategy parameters, e.g. --params fast=5 slow=20")
        parser.add_argument("--max-lines", type=int, default=0,
                            help="print at most this many differences (default 0: all)")

    def handle(self, *args, strategy, symbol, exchange, timeframe, bars, cuts, params, max_lines, **options):
        from django.conf import settings
        from tqdm import tqdm

        from ai.features.dataset import bars_from_db
        from ai.strategies.base import StrategyError
        from ai.strategies.loader import load_strategy, parse_params
        from ai.strategies.lookahead import lookahead_analysis
        from trading.exchanges.errors import BadSymbol
        from trading.models import Symbol

        if bars < 2:
            raise CommandError(f"--bars must be at least 2, got {bars}")
        if cuts < 1:
            raise CommandError(f"--cuts must be at least 1, got {cuts}")
        try:
            strat = load_strategy(strategy, parse_params(params))
        except StrategyError as exc:
            raise CommandError(str(exc)) from None
        exchange = exchange or settings.MARKET_EXCHANGE
        timeframe = timeframe or strat.timeframe
        if symbol is None:
            first = Symbol.objects.filter(exchange=exchange, active=True).order_by("symbol").first()
            if first is None:
                raise CommandError(f"no active symbol on exchange {exchange}: give --symbol")
            symbol = first.symbol
        try:
            data = bars_from_db(exchange, timeframe, [symbol], bars)[symbol]
        except BadSymbol as exc:
            raise CommandError(str(exc)) from None
        need = strat.startup_bars + 2
        if len(data) < need:
            raise CommandError(f"{symbol} {timeframe} on {exchange}: {len(data)} bars stored, strategy "
                               f"{strat.name} needs at least {need} ({strat.startup_bars} startup bars + 2)")
        self.stdout.write(f"strategy {strat.name} {strat.p} on {symbol} {timeframe} ({exchange}): {len(data)} bars, "
                          f"{cuts} cuts")
        bar = tqdm(total=cuts, desc="cuts", unit="cut", file=self.stderr._out)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            report = lookahead_analysis(strat, data, n_cuts=cuts, progress=progress)
        except (StrategyError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        if not report.biased:
            self.stdout.write(self.style.SUCCESS(
                f"no lookahead: every indicator and signal of {strat.name} is the same on {len(report.cut_lengths)} "
                f"cuts as on the full {report.n_bars} bars"))
            return
        shown = report.differences if max_lines <= 0 else report.differences[:max_lines]
        for d in shown:
            self.stdout.write(d.describe())
        if len(shown) < len(report.differences):
            self.stdout.write(f"... and {len(report.differences) - len(shown)} more")
        raise CommandError(f"lookahead: strategy {strat.name} has {len(report.differences)} values that change when "
                           f"future bars are cut off, in columns {', '.join(report.columns())}")
