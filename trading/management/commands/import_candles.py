"""manage.py import_candles FILE [FILE ...]: CSV or Parquet candles into the database."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from trading.exchanges.errors import BadSymbol, BadTimeframe
from trading.marketdata import importers, timeframes
from trading.marketdata.ingest import ingest
from trading.marketdata.selectors import resolve_symbols

# Problems printed one per line before the rest are summarized.
MAX_LISTED_PROBLEMS = 50


class Command(BaseCommand):
    help = ("Import candles from CSV or Parquet (columns: open_time, open, high, low, close, volume, and optional "
            "symbol, timeframe). Bad rows are reported with their row number and skipped; the rest of each file "
            "is imported in one transaction.")

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--exchange", default="paper", help="exchange id of the symbols (default: paper)")
        parser.add_argument("--symbol", help="unified symbol for files without a symbol column")
        parser.add_argument("--timeframe", help="timeframe for files without a timeframe column")

    def handle(self, *args, files, exchange, symbol, timeframe, **options):
        if timeframe:
            try:
                timeframes.seconds(timeframe)
            except BadTimeframe as exc:
                raise CommandError(str(exc)) from None
        total_ok = total_bad = 0
        for path in files:
            if not path.exists():
                raise CommandError(f"{path}: no such file")
            try:
                parsed = importers.parse(path, symbol=symbol, timeframe=timeframe)
            except (ValueError, OSError) as exc:
                raise CommandError(f"{path}: {exc}") from None
            skipped_unknown = 0
            with transaction.atomic():
                for (sym, tf), rows in parsed.groups.items():
                    try:
                        (sym_obj,) = resolve_symbols([sym], exchange)
                    except BadSymbol as exc:
                        self.stderr.write(f"{path.name}: {exc}: {len(rows)} rows skipped")
                        skipped_unknown += len(rows)
                        continue
                    ingest(sym_obj, tf, rows)
            for n, reason in parsed.problems[:MAX_LISTED_PROBLEMS]:
                self.stderr.write(f"{path.name}: row {n}: {reason} (skipped)")
            if len(parsed.problems) > MAX_LISTED_PROBLEMS:
                self.stderr.write(f"{path.name}: ... and {len(parsed.problems) - MAX_LISTED_PROBLEMS} more bad rows")
            for sym, tf, start, end in parsed.gaps:
                missing = (end - start) // timeframes.milliseconds(tf) + 1
                self.stderr.write(f"{path.name}: gap in {sym} {tf}: {missing} bar(s) missing from "
                                  f"{timeframes.to_datetime(start):%Y-%m-%d %H:%M}Z to "
                                  f"{timeframes.to_datetime(end):%Y-%m-%d %H:%M}Z")
            ok = parsed.rows_ok - skipped_unknown
            bad = len(parsed.problems) + skipped_unknown
            total_ok += ok
            total_bad += bad
            self.stdout.write(f"{path.name}: {ok} rows imported, {bad} skipped, {len(parsed.gaps)} gap(s)")
        self.stdout.write(f"total: {total_ok} rows imported, {total_bad} skipped")
