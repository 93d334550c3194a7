"""An account's state inside one locked transaction: the lock, balances and positions loaded
for the engine, fills applied, and everything written back (on PostgreSQL in as few round
trips as possible: the order path is lock + read, then one write statement).

Every write to an account's balances, orders, trades, positions and funding happens while
its PaperAccount row is locked (select_for_update), so two processes cannot spend the same
balance twice.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.db import connection, models
from django.utils import timezone

from trading.exchanges.paper import engine
from trading.exchanges.paper.engine import ZERO, FillConfig, PositionState, Wallet
from trading.models import PaperAccount, PaperBalance, PaperOrder, PaperOrderStatus, PaperPosition, PaperTrade, Symbol

OPEN = PaperOrderStatus.OPEN


def new_id() -> str:
    return uuid.uuid4().hex[:24]


def utc_now() -> datetime:
    return timezone.now()


def lock_account(account_id: int) -> PaperAccount:
    return PaperAccount.objects.select_for_update().get(pk=account_id)


# The order path's first round trip: lock the account, then — in a second statement, whose
# snapshot is taken after the lock is granted (READ COMMITTED), so it sees what the previous
# holder committed — read the balances and the position it needs and whether an open order
# already holds the clientOrderId. A single statement would read the rows of its joins as of
# before the lock wait: two processes could then both spend the same balance.
_POSITION_COLUMNS = ("id", "side", "contracts", "entry_price", "leverage", "isolated_margin", "liquidation_price",
                     "realized_pnl", "opened_market_ms", "updated_at")
_LOCK_SQL = f"SELECT id FROM {PaperAccount._meta.db_table} WHERE id = %s FOR UPDATE"
_READ_SQL = (
    f"SELECT b.id, b.currency, b.free, b.used, EXISTS (SELECT 1 FROM {PaperOrder._meta.db_table} o "
    f"WHERE o.account_id = a.id AND o.client_order_id = %s AND o.status = 'open'), "
    + ", ".join(f"p.{c}" for c in _POSITION_COLUMNS)
    + f" FROM {PaperAccount._meta.db_table} a LEFT JOIN {PaperBalance._meta.db_table} b "
    f"ON b.account_id = a.id AND b.currency = ANY(%s) LEFT JOIN {PaperPosition._meta.db_table} p "
    f"ON p.account_id = a.id AND p.symbol_id = %s WHERE a.id = %s"
)


def _lock_and_read(account_id: int, params: list) -> list[tuple]:
    """Run _LOCK_SQL then _READ_SQL; in one round trip when the cursor binds parameters on the
    client (Django's default for psycopg 3), else in two."""
    import psycopg

    with connection.cursor() as cur:
        raw = cur.cursor
        if isinstance(raw, psycopg.ClientCursor):
            raw.execute(f"{_LOCK_SQL}; {_READ_SQL}", [account_id, *params])
            locked = raw.fetchall()
            raw.nextset()
            rows = raw.fetchall()
        else:
            cur.execute(_LOCK_SQL, [account_id])
            locked = cur.fetchall()
            cur.execute(_READ_SQL, params)
            rows = cur.fetchall()
    return rows if locked else []


def _write_sql(inserts: Sequence[models.Model], updates: Sequence[models.Model], balances: Sequence[PaperBalance]
               ) -> tuple[str, list, list[models.Model]]:
    """One statement (data-modifying CTEs) that inserts `inserts` in order — a foreign key to an
    instance inserted earlier in the list takes its new id —, updates `updates` (every column)
    and sets free/used of existing `balances`. Returns (sql, params, the inserted instances in
    the order of the ids the final SELECT returns)."""
    q = connection.ops.quote_name
    ctes: list[str] = []
    params: list = []
    names: dict[int, str] = {}
    for i, obj in enumerate(inserts):
        cols, vals = [], []
        for f in obj._meta.concrete_fields:
            if f.primary_key:
                continue
            cols.append(q(f.column))
            related = f.get_cached_value(obj, None) if f.is_relation and hasattr(f, "get_cached_value") else None
            if related is not None and getattr(obj, f.attname) is None and id(related) in names:
                vals.append(f"(SELECT id FROM {names[id(related)]})")
            else:
                vals.append("%s")
                params.append(f.get_db_prep_save(f.pre_save(obj, True), connection))
        names[id(obj)] = f"i{i}"
        ctes.append(f"i{i} AS (INSERT INTO {q(obj._meta.db_table)} ({', '.join(cols)}) VALUES ({', '.join(vals)}) "
                    f"RETURNING id)")
    for i, obj in enumerate(updates):
        sets = []
        for f in obj._meta.concrete_fields:
            if not f.primary_key:
                sets.append(f"{q(f.column)} = %s")
                params.append(f.get_db_prep_save(f.pre_save(obj, False), connection))
        params.append(obj.pk)
        ctes.append(f"u{i} AS (UPDATE {q(obj._meta.db_table)} SET {', '.join(sets)} WHERE id = %s RETURNING id)")
    if balances:
        values = ", ".join(["(%s::bigint, %s::numeric, %s::numeric)"] * len(balances))
        params += [x for b in balances for x in (b.pk, b.free, b.used)]
        ctes.append(f"b AS (UPDATE {q(PaperBalance._meta.db_table)} AS t SET free = v.free, used = v.used "
                    f"FROM (VALUES {values}) AS v(id, free, used) WHERE t.id = v.id RETURNING t.id)")
    select = ", ".join(f"(SELECT id FROM i{i})" for i in range(len(inserts))) or "1"
    return f"WITH {', '.join(ctes)} SELECT {select}", params, list(inserts)


# --- the ledger: an account's balances and positions inside one locked transaction -----------


class Ledger:
    """Loads balance and position rows on demand, hands the engine plain states, and saves
    what changed at the end (`flush`)."""

    def __init__(self, account_id: int, now: datetime):
        self.account_id = account_id
        self.now = now
        self.balances: dict[str, PaperBalance] = {}
        self.positions: dict[int, PaperPosition] = {}
        self._dirty_balances: set[str] = set()
        self._dirty_positions: set[int] = set()

    def lock(self, currencies: Sequence[str], client_order_id: str | None = None, symbol: Symbol | None = None,
             default_leverage: int = 1) -> bool:
        """Lock the account row and load these balances (and `symbol`'s position) in one round
        trip on PostgreSQL; True if an open order of the account already uses `client_order_id`."""
        if connection.vendor != "postgresql":
            lock_account(self.account_id)
            self.load_balances(currencies)
            return client_order_id is not None and PaperOrder.objects.filter(
                account_id=self.account_id, client_order_id=client_order_id, status=OPEN).exists()
        rows = _lock_and_read(self.account_id, [client_order_id, list(currencies), symbol.pk if symbol else None,
                                                self.account_id])
        if not rows:
            raise PaperAccount.DoesNotExist(f"paper account id {self.account_id} does not exist")
        for pk, currency, free, used, *_rest in rows:
            if pk is not None:
                self.balances[currency] = PaperBalance(pk=pk, account_id=self.account_id, currency=currency,
                                                       free=free, used=used)
        for c in currencies:
            self.balances.setdefault(c, PaperBalance(account_id=self.account_id, currency=c))
        if symbol is not None:
            pos = dict(zip(_POSITION_COLUMNS, rows[0][5:], strict=True))
            if pos["id"] is None:
                row = PaperPosition(account_id=self.account_id, symbol=symbol, leverage=default_leverage,
                                    updated_at=self.now)
            else:
                row = PaperPosition(account_id=self.account_id, symbol_id=symbol.pk, **pos)
                row.symbol = symbol
            self.positions[symbol.pk] = row
        return bool(rows[0][4])

    def load_balances(self, currencies: Sequence[str]) -> None:
        missing = [c for c in currencies if c not in self.balances]
        if missing:
            for row in PaperBalance.objects.filter(account_id=self.account_id, currency__in=missing):
                self.balances[row.currency] = row
            for c in missing:
                self.balances.setdefault(c, PaperBalance(account_id=self.account_id, currency=c))

    def wallet(self, currency: str) -> Wallet:
        self.load_balances([currency])
        row = self.balances[currency]
        return Wallet(free=row.free, used=row.used)

    def set_wallet(self, currency: str, wallet: Wallet) -> None:
        row = self.balances[currency]
        if wallet.free < 0 or wallet.used < 0:  # the engine guarantees it; the DB checks it too
            raise AssertionError(f"negative balance computed for {currency}: {wallet}")
        if (row.free, row.used) != (wallet.free, wallet.used):
            row.free, row.used = wallet.free, wallet.used
            self._dirty_balances.add(currency)

    def position_row(self, symbol: Symbol, default_leverage: int) -> PaperPosition:
        row = self.positions.get(symbol.pk)
        if row is None:
            row = PaperPosition.objects.filter(account_id=self.account_id, symbol_id=symbol.pk).first()
            if row is None:
                row = PaperPosition(account_id=self.account_id, symbol=symbol, leverage=default_leverage,
                                    updated_at=self.now)
            row.symbol = symbol
            self.positions[symbol.pk] = row
        return row

    def position(self, symbol: Symbol, default_leverage: int) -> PositionState:
        row = self.position_row(symbol, default_leverage)
        return PositionState(side=row.side, contracts=row.contracts, entry_price=row.entry_price,
                             leverage=row.leverage, isolated_margin=row.isolated_margin, realized_pnl=row.realized_pnl)

    def set_position(self, symbol: Symbol, state: PositionState, config: FillConfig, market_time_ms: int) -> None:
        row = self.positions[symbol.pk]
        was_open, old_side = row.contracts > 0, row.side
        row.side, row.contracts, row.entry_price = state.side, state.contracts, state.entry_price
        row.leverage, row.isolated_margin, row.realized_pnl = state.leverage, state.isolated_margin, state.realized_pnl
        row.liquidation_price = engine.liquidation_price(state.side, state.contracts, state.entry_price,
                                                         state.isolated_margin, config.maintenance_tiers)
        if state.contracts == 0:
            row.opened_market_ms = None
        elif not was_open or old_side != state.side:
            row.opened_market_ms = market_time_ms
        row.updated_at = self.now
        self._dirty_positions.add(symbol.pk)

    def flush(self, inserts: Sequence[models.Model] = ()) -> None:
        """Write what changed, after inserting `inserts` (model instances, in order). On
        PostgreSQL the order path's writes go out as one statement."""
        balances = [self.balances[c] for c in sorted(self._dirty_balances)]
        positions = [self.positions[sid] for sid in sorted(self._dirty_positions)]
        if connection.vendor == "postgresql":
            new = [*inserts, *[b for b in balances if b.pk is None], *[p for p in positions if p.pk is None]]
            sql, params, inserted = _write_sql(new, [p for p in positions if p.pk is not None],
                                               [b for b in balances if b.pk is not None])
            if new or params:
                with connection.cursor() as cur:
                    cur.execute(sql, params)
                    ids = cur.fetchone()
                for obj, pk in zip(inserted, ids, strict=False):
                    obj.pk = pk
                    obj._state.adding = False
        else:
            for obj in inserts:
                obj.save(force_insert=True)
            for b in balances:
                b.save()
            for p in positions:
                p.save()
        self._dirty_balances.clear()
        self._dirty_positions.clear()


def apply_fill(ledger: Ledger, order: PaperOrder, symbol: Symbol, market: engine.MarketSpec, amount: Decimal,
          price: Decimal, liquidity: str, release: Decimal, config: FillConfig, market_time_ms: int) -> PaperTrade:
    """Apply one fill of `order` to the ledger and the order row; returns the (unsaved) trade."""
    realized = ZERO
    if market.is_perpetual:
        cur = market.margin_currency
        result = engine.apply_perp_fill(market, order.side, amount, price, liquidity, wallet=ledger.wallet(cur),
                                        position=ledger.position(symbol, config.default_leverage),
                                        reduce_only=order.reduce_only, release=release, config=config)
        ledger.set_wallet(cur, result.wallet)
        ledger.set_position(symbol, result.position, config, market_time_ms)
        cost, fee, realized = result.cost, result.fee, result.realized_pnl
    else:
        ledger.load_balances([market.base, market.quote])
        result = engine.apply_spot_fill(market, order.side, amount, price, liquidity,
                                        base=ledger.wallet(market.base), quote=ledger.wallet(market.quote),
                                        release=release, config=config)
        ledger.set_wallet(market.base, result.base)
        ledger.set_wallet(market.quote, result.quote)
        cost, fee = result.cost, result.fee
    order.filled += amount
    order.remaining -= amount
    order.cost += cost
    order.fee += fee
    order.average = engine.q12(order.cost / order.filled)
    order.last_trade_at = ledger.now
    order.updated_at = ledger.now
    return PaperTrade(account_id=ledger.account_id, order=order, symbol=symbol, trade_id=new_id(), side=order.side,
                      price=price, amount=amount, cost=cost, fee=fee, fee_currency=market.margin_currency,
                      taker_or_maker=liquidity, realized_pnl=realized, timestamp=ledger.now,
                      market_time_ms=market_time_ms)


def release_reservation(ledger: Ledger, order: PaperOrder, amount: Decimal | None = None) -> Decimal:
    """Take `amount` (default: all) of the order's reservation back from used to free."""
    amount = order.reserved if amount is None else min(amount, order.reserved)
    if amount > 0:
        w = ledger.wallet(order.reserved_currency)
        amount = min(amount, w.used)
        ledger.set_wallet(order.reserved_currency, Wallet(free=w.free + amount, used=w.used - amount))
        order.reserved -= amount
    return amount
