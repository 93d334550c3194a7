"""manage.py import_candles FILE [FILE ...]: CSV or Parquet candles into the database."""
from pathlib import Path

import numpy as np
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.decimals import to_decimal
from trading.exchanges.errors import BadSymbol, BadTimeframe
from trading.marketdata import gaps, importers, timeframes
from trading.marketdata.ingest import ingest
from trading.marketdata.selectors import resolve_symbols
from trading.models import PRICE_DECIMALS, Symbol

# Problems printed one per line before the rest are summarized.
MAX_LISTED_PROBLEMS = 50
SECTOR_MAX_LENGTH = Symbol._meta.get_field("sector").max_length


def _positive_option(value: str | None, option: str):
    if value is None:
        return None
    try:
        d = to_decimal(value, option)
    except ValueError:
        raise CommandError(f"{option} {value!r} is not a number") from None
    if d <= 0:
        raise CommandError(f"{option} must be greater than 0, got {value}")
    if -d.normalize().as_tuple().exponent > PRICE_DECIMALS:
        raise CommandError(f"{option} {value} has more than {PRICE_DECIMALS} decimal places (what the database keeps)")
    return d.normalize()


def _fmt(ms: int) -> str:
    return f"{timeframes.to_datetime(ms):%Y-%m-%d %H:%M}Z"


class Command(BaseCommand):
    help = ("Import candles from CSV or Parquet (columns: open_time, open, high, low, close, volume, and optional "
            "symbol, timeframe). Bad rows are reported with their row number and skipped; the rest of each file "
            "is imported in one transaction. Symbols missing on --exchange are skipped unless --create-symbols.")

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--exchange", default="paper", help="exchange id of the symbols (default: paper)")
        parser.add_argument("--symbol", help="unified symbol for files without a symbol column")
        parser.add_argument("--timeframe", help="timeframe for files without a timeframe column")
        parser.add_argument("--create-symbols", action="store_true",
                            help="create the symbols --exchange does not have (base, quote and settle from the "
                                 "unified symbol; tick and lot size from the options or inferred from the data)")
        parser.add_argument("--tick-size", help="price increment of created symbols (default: inferred from prices)")
        parser.add_argument("--lot-size", help="amount increment of created symbols (default: inferred from volumes)")
        parser.add_argument("--sector", default="", help="sector of created symbols (default: none)")

    def handle(self, *args, files, exchange, symbol, timeframe, create_symbols, tick_size, lot_size, sector,
               **options):
        if timeframe:
            try:
                timeframes.seconds(timeframe)
            except BadTimeframe as exc:
                raise CommandError(str(exc)) from None
        tick = _positive_option(tick_size, "--tick-size")
        lot = _positive_option(lot_size, "--lot-size")
        if len(sector) > SECTOR_MAX_LENGTH:
            raise CommandError(f"--sector {sector!r} is longer than {SECTOR_MAX_LENGTH} characters")
        if not create_symbols:
            given = [o for o, v in (("--tick-size", tick_size), ("--lot-size", lot_size), ("--sector", sector)) if v]
            if given:
                raise CommandError(f"{', '.join(given)} only apply to symbols created with --create-symbols")
        total_ok = total_bad = 0
        for path in files:
            if not path.exists():
                raise CommandError(f"{path}: no such file")
            try:
                parsed = importers.parse(path, symbol=symbol, timeframe=timeframe)
            except (ValueError, OSError) as exc:
                raise CommandError(f"{path}: {exc}") from None
            skipped_unknown = 0
            created: dict[str, tuple[Symbol, str]] = {}
            # The symbols a file creates commit with its rows: a file that fails creates none.
            with transaction.atomic():
                for (sym, tf), rows in parsed.groups.items():
                    try:
                        (sym_obj,) = resolve_symbols([sym], exchange)
                    except BadSymbol as exc:
                        if not create_symbols:
                            self.stderr.write(f"{path.name}: {exc}: {len(rows)} rows skipped "
                                              "(add --create-symbols to create it)")
                            skipped_unknown += len(rows)
                            continue
                        if sym not in created:
                            created[sym] = self._create_symbol(path, parsed, sym, exchange, tick, lot, sector)
                        sym_obj = created[sym][0]
                    ingest(sym_obj, tf, rows)
            for _row, note in created.values():
                self.stdout.write(f"{path.name}: {note}")
            for n, reason in parsed.problems[:MAX_LISTED_PROBLEMS]:
                self.stderr.write(f"{path.name}: row {n}: {reason} (skipped)")
            if len(parsed.problems) > MAX_LISTED_PROBLEMS:
                self.stderr.write(f"{path.name}: ... and {len(parsed.problems) - MAX_LISTED_PROBLEMS} more bad rows")
            unexpected = calendar = 0
            for sym, tf, start, end in parsed.gaps:
                missing = (end - start) // timeframes.milliseconds(tf) + 1
                span = f"{missing} bar(s) missing from {_fmt(start)} to {_fmt(end)}"
                kind = gaps.classify_gap(start, end, tf)
                if kind in gaps.CALENDAR_KINDS:
                    # The market was closed: expected, so it is information, not a warning.
                    calendar += 1
                    self.stdout.write(f"{path.name}: calendar gap ({kind}) in {sym} {tf}: {span}")
                else:
                    unexpected += 1
                    self.stderr.write(f"{path.name}: gap in {sym} {tf}: {span}")
            ok = parsed.rows_ok - skipped_unknown
            bad = len(parsed.problems) + skipped_unknown
            total_ok += ok
            total_bad += bad
            self.stdout.write(f"{path.name}: {ok} rows imported, {bad} skipped, {unexpected} gap(s), "
                              f"{calendar} calendar gap(s)")
        self.stdout.write(f"total: {total_ok} rows imported, {total_bad} skipped")

    def _create_symbol(self, path: Path, parsed: importers.ParsedFile, sym: str, exchange: str, tick, lot,
                       sector: str) -> tuple[Symbol, str]:
        """A Symbol row for `sym` on `exchange`, its increments given or inferred from every row of
        the file for that symbol (all its timeframes), with the line that says so. Refused
        (CommandError) when the symbol does not parse or the row does not validate."""
        try:
            unified = importers.parse_unified_symbol(sym)
        except ValueError as exc:
            raise CommandError(f"{path.name}: cannot create {exc}") from None
        bars = np.concatenate([rows for (s, _tf), rows in parsed.groups.items() if s == sym])
        if tick is None:
            inferred = importers.infer_increment(bars[:, 1:5])
            tick, tick_note = inferred.value, f"inferred from {inferred.samples} prices"
        else:
            tick_note = "given"
        if lot is None:
            inferred = importers.infer_increment(bars[:, 5])
            lot = inferred.value
            lot_note = (f"inferred from {inferred.samples} volumes" if inferred.samples
                        else "no non-zero volume to infer from: the finest")
        else:
            lot_note = "given"
        # min_notional is left at the model's default, as fetch_candles does when the exchange
        # states no minimum: a CSV says nothing about one.
        row = Symbol(exchange=exchange, symbol=unified.symbol, base=unified.base, quote=unified.quote,
                     settle=unified.settle, market_type=unified.market_type, sector=sector,
                     tick_size=tick, lot_size=lot)
        try:
            row.full_clean()
        except ValidationError as exc:
            raise CommandError(f"{path.name}: cannot create {sym} on {exchange}: {exc.message_dict}") from None
        row.save()
        return row, (f"created {sym} on {exchange}: tick {tick:f} ({tick_note}), lot {lot:f} ({lot_note}), "
                     f"min notional {row.min_notional:f}")
