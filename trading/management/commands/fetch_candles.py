"""manage.py fetch_candles: backfill candles from an exchange through the gateway.

    manage.py fetch_candles --exchange binanceusdm --symbols BTC/USDT:USDT,ETH/USDT:USDT \\
        --timeframe 5m --since 2026-01-01T00:00Z [--until 2026-02-01T00:00Z]

For each symbol: pages of up to --page-size bars are fetched from --since on (each page starts
one bar after the last bar of the previous one), only closed bars in [since, until) are kept,
and every page is upserted at once (so an interrupted run keeps what it fetched and a rerun
is idempotent). Then the bar times the exchange did not return are collected into gaps, each
gap is re-fetched (--repair-tries rounds) and what is still missing is reported with its time
range. A missing run at the very start is reported as "no history before" (a listing after
--since), not as a gap. Requests go through the gateway: ccxt's rate limiter spaces them, and
throttling and network errors are retried there.

Symbols missing from the database are created from the exchange's market (tick size and lot
size from its precision, min notional from its cost limit).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.decimals import to_decimal
from trading.exchanges import errors
from trading.exchanges.factory import get_gateway
from trading.marketdata import timeframes
from trading.marketdata.ingest import ingest
from trading.models import MarketType, Symbol

DEFAULT_PAGE_SIZE = 1000  # ccxt's cap for Binance klines
MAX_LISTED_GAPS = 50


def parse_utc(value: str, option: str) -> datetime:
    """An ISO-8601 time with an explicit offset ('2026-01-01T00:00Z', '...+00:00')."""
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CommandError(f"{option} {value!r} is not an ISO-8601 time such as 2026-01-01T00:00Z") from None
    if dt.tzinfo is None:
        raise CommandError(f"{option} {value!r} has no timezone; write it in UTC, e.g. {value}Z")
    return dt


def _decimal(value, what: str, symbol: str) -> Decimal:
    try:
        d = to_decimal(value, what)
    except ValueError:
        raise CommandError(f"{symbol}: the exchange gives no usable {what} ({value!r})") from None
    return d


@dataclass
class Backfill:
    symbol: str
    stored: int = 0
    dropped: int = 0
    repaired: int = 0
    seen: set[int] = field(default_factory=set)
    no_history_before: int | None = None  # open time of the first bar, when history starts late
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first missing, last missing) open times
    error: str | None = None


def _runs(missing: list[int], step: int) -> list[tuple[int, int]]:
    """Consecutive open times -> (first, last) ranges."""
    runs: list[tuple[int, int]] = []
    for t in missing:
        if runs and t == runs[-1][1] + step:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    return runs


def _fmt(ms: int) -> str:
    return f"{timeframes.to_datetime(ms):%Y-%m-%d %H:%M}Z"


class Command(BaseCommand):
    help = ("Backfill candles from an exchange (through the gateway) with pagination, rate limiting, and gap "
            "detection and repair. Times are ISO-8601 with a timezone, e.g. 2026-01-01T00:00Z.")

    def add_arguments(self, parser):
        parser.add_argument("--exchange", help="gateway id: a ccxt id such as binanceusdm, or paper "
                                               "(default: settings.MARKET_EXCHANGE)")
        parser.add_argument("--symbols", required=True, help="comma-separated unified symbols, e.g. "
                                                             "BTC/USDT:USDT,ETH/USDT:USDT")
        parser.add_argument("--timeframe", required=True, help=f"one of {', '.join(timeframes.TIMEFRAMES)}")
        parser.add_argument("--since", required=True, help="first bar time, e.g. 2026-01-01T00:00Z")
        parser.add_argument("--until", help="stop before this time (default: now; the open bar is never stored)")
        parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE, help="bars per request")
        parser.add_argument("--repair-tries", type=int, default=2, help="re-fetch rounds for gaps (default 2)")
        parser.add_argument("--fail-on-gaps", action="store_true", help="exit with an error if gaps remain")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, **options):
        step_tf = options["timeframe"]
        try:
            step = timeframes.milliseconds(step_tf)
        except errors.BadTimeframe as exc:
            raise CommandError(str(exc)) from None
        symbols = list(dict.fromkeys(s.strip() for s in options["symbols"].split(",") if s.strip()))
        if not symbols:
            raise CommandError(f"--symbols {options['symbols']!r} names no symbol")
        if options["page_size"] < 1:
            raise CommandError(f"--page-size {options['page_size']} must be at least 1")
        since_ms = timeframes.to_ms(parse_utc(options["since"], "--since"))
        now_ms = int(time.time() * 1000)
        until_ms = timeframes.to_ms(parse_utc(options["until"], "--until")) if options["until"] else now_ms
        start = since_ms + (-since_ms) % step  # first bar opening at or after --since
        # Bars opening before --until, and closed: the bar open now is still changing.
        end = min(until_ms + (-until_ms) % step, timeframes.floor_ms(now_ms, step_tf))
        if end <= start:
            raise CommandError(f"nothing to fetch: no closed {step_tf} bar between --since {options['since']!r} "
                               f"and {'--until ' + repr(options['until']) if options['until'] else 'now'}")

        try:
            gateway = get_gateway(options["exchange"])
        except errors.ExchangeError as exc:
            raise CommandError(str(exc)) from None
        try:
            try:
                markets = gateway.load_markets()
            except errors.ExchangeError as exc:
                raise CommandError(f"cannot load markets from {gateway.id}: {exc}") from None
            unknown = [s for s in symbols if s not in markets]
            if unknown:
                raise CommandError(f"unknown symbol(s) on {gateway.id}: {', '.join(map(repr, unknown))}")
            rows = {s: self._symbol_row(gateway.id, markets[s]) for s in symbols}
            results = [self._backfill(gateway, rows[s], step_tf, step, start, end, options) for s in symbols]
        finally:
            gateway.close()

        failed = [r for r in results if r.error]
        gaps_left = sum(len(r.gaps) for r in results)
        for r in results:
            self._report(r, step_tf, step)
        if failed:
            raise CommandError("failed: " + "; ".join(f"{r.symbol}: {r.error}" for r in failed))
        if gaps_left and options["fail_on_gaps"]:
            raise CommandError(f"{gaps_left} gap(s) remain")

    # --- symbols -----------------------------------------------------------------------------

    def _symbol_row(self, exchange_id: str, market: dict) -> Symbol:
        existing = Symbol.objects.filter(exchange=exchange_id, symbol=market["symbol"]).first()
        if existing is not None:
            return existing
        symbol = market["symbol"]
        if market.get("swap"):
            market_type = MarketType.PERPETUAL
        elif market.get("spot"):
            market_type = MarketType.SPOT
        else:
            raise CommandError(f"{symbol}: only spot and perpetual markets are supported (this is "
                               f"{market.get('type')!r})")
        precision, limits = market.get("precision") or {}, market.get("limits") or {}
        min_cost = (limits.get("cost") or {}).get("min")
        row = Symbol(
            exchange=exchange_id, symbol=symbol, base=market["base"], quote=market["quote"],
            settle=market.get("settle") or "", market_type=market_type,
            tick_size=_decimal(precision.get("price"), "tick size", symbol),
            lot_size=_decimal(precision.get("amount"), "lot size", symbol),
            min_notional=_decimal(min_cost, "min notional", symbol) if min_cost is not None else Decimal("0"),
            active=market.get("active") is not False,
        )
        try:
            row.full_clean()
        except ValidationError as exc:
            raise CommandError(f"{symbol}: cannot store this market: {exc.message_dict}") from None
        row.save()
        self.stdout.write(f"{symbol}: created symbol on {exchange_id} (tick {row.tick_size}, lot {row.lot_size}, "
                          f"min notional {row.min_notional})")
        return row

    # --- fetching ----------------------------------------------------------------------------

    def _store(self, sym: Symbol, tf: str, step: int, raw: list, lo: int, hi: int, result: Backfill) -> int:
        """Keep well-formed closed bars with lo <= open time < hi not stored yet; upsert them."""
        good = []
        for r in raw:
            try:
                t = int(r[0])
                o, h, low, c, v = (float(x) for x in r[1:6])
            except (TypeError, ValueError, IndexError):
                result.dropped += 1
                continue
            if not lo <= t < hi or t in result.seen:
                continue
            if (t % step or not all(math.isfinite(x) for x in (o, h, low, c, v))
                    or not h >= max(o, c) >= min(o, c) >= low > 0 or v < 0):
                result.dropped += 1  # left as a gap: a re-fetch may bring a good bar
                continue
            good.append([t, o, h, low, c, v])
        if good:
            ingest(sym, tf, good)
            result.seen.update(r[0] for r in good)
            result.stored += len(good)
        return len(good)

    def _backfill(self, gateway, sym: Symbol, tf: str, step: int, start: int, end: int, options) -> Backfill:
        result = Backfill(sym.symbol)
        page = options["page_size"]
        expected = (end - start) // step
        bar = tqdm(total=expected, desc=f"{sym.symbol} {tf}", unit="bar", file=sys.stderr,
                   disable=options["no_progress"], leave=False)
        try:
            cursor = start
            while cursor < end:
                raw = gateway.fetch_ohlcv(sym.symbol, tf, since=cursor, limit=page)
                times = [int(r[0]) for r in raw if r and r[0] is not None]
                bar.update(self._store(sym, tf, step, raw, start, end, result))
                if not times or max(times) < cursor:
                    break  # nothing at or after the cursor: the exchange has no more bars
                cursor = max(times) + step
            for _round in range(max(0, options["repair_tries"])):
                missing = self._missing(result, start, end, step)
                if not missing:
                    break
                for first, last in missing:
                    found = self._refetch(gateway, sym, tf, step, first, last + step, page, result)
                    result.repaired += found
                    bar.update(found)
        except errors.ExchangeError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            bar.close()
        missing = self._missing(result, start, end, step)
        if missing and missing[0][0] == start and result.seen:
            first_bar = min(result.seen)
            result.no_history_before = first_bar
            missing = missing[1:]
        result.gaps = missing
        return result

    def _refetch(self, gateway, sym: Symbol, tf: str, step: int, lo: int, hi: int, page: int,
                 result: Backfill) -> int:
        found, cursor = 0, lo
        while cursor < hi:
            raw = gateway.fetch_ohlcv(sym.symbol, tf, since=cursor, limit=min(page, (hi - cursor) // step))
            got = self._store(sym, tf, step, raw, lo, hi, result)
            found += got
            inside = [int(r[0]) for r in raw if r and r[0] is not None and lo <= int(r[0]) < hi]
            if not got or not inside:
                break
            cursor = max(inside) + step
        return found

    @staticmethod
    def _missing(result: Backfill, start: int, end: int, step: int) -> list[tuple[int, int]]:
        return _runs([t for t in range(start, end, step) if t not in result.seen], step)

    # --- report ------------------------------------------------------------------------------

    def _report(self, r: Backfill, tf: str, step: int) -> None:
        span = f" ({_fmt(min(r.seen))} to {_fmt(max(r.seen))})" if r.seen else ""
        self.stdout.write(f"{r.symbol} {tf}: {r.stored} bars stored{span}, {r.repaired} repaired, "
                          f"{r.dropped} malformed dropped, {len(r.gaps)} gap(s) remaining")
        if r.no_history_before is not None:
            self.stdout.write(f"{r.symbol} {tf}: no history before {_fmt(r.no_history_before)}")
        for first, last in r.gaps[:MAX_LISTED_GAPS]:
            n = (last - first) // step + 1
            self.stderr.write(self.style.WARNING(
                f"gap in {r.symbol} {tf}: {n} bar(s) missing from {_fmt(first)} to {_fmt(last)}"))
        if len(r.gaps) > MAX_LISTED_GAPS:
            self.stderr.write(f"{r.symbol} {tf}: ... and {len(r.gaps) - MAX_LISTED_GAPS} more gaps")
