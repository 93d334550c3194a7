"""Reconciliation: the database against the exchange, on execution-worker start and every
minute.

- Our open orders (pending with a send attempt, open, partial, unknown): looked up by
  clientOrderId; missed fills are recorded (position included), final states applied; an order
  the exchange does not have is closed (`cancelled`, or `rejected` if it was never
  acknowledged) and reported.
- The exchange's open orders we do not know: imported as EXTERNAL orders, reported.
- Positions: an exchange position we do not track is imported (entry model `external`); one we
  track that the exchange no longer holds is closed (exit reason `reconciliation`); a size
  difference is reported.
- Balances: recorded with the run; a negative balance is reported, and so is a spot position
  the exchange's balance of its base currency no longer covers (sold or withdrawn elsewhere).
Every mismatch raises `system.alert`. A process places no order before its first successful
run (trading/execution/orders.py::ensure_reconciled).
"""
from __future__ import annotations

import os
import socket
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from core.decimals import to_decimal
from core.enums import OrderType, PositionSide, Side
from qtweb.events import EventType
from qtweb.events.bus import publish
from qtweb.health.status import redis_client, report_module
from qtweb.logging import get_logger
from qtweb.queues import Service
from qtweb.tracing import current_trace_id
from trading.exchanges import errors
from trading.exchanges.account import exchange_id, execution_gateway
from trading.execution import orders as order_svc
from trading.execution.snapshot import account_snapshot_refresh
from trading.models import (
    OPEN_ORDER_STATUSES,
    IntentStatus,
    MarketType,
    Order,
    OrderOrigin,
    OrderStatus,
    Position,
    PositionStatus,
    ReconciliationRun,
    Symbol,
)
from trading.positions.services import position_close_external

log = get_logger(__name__)

ZERO = Decimal("0")
LOCK_KEY = "exec:reconcile:lock"
LOCK_SECONDS = 120
WAIT_FOR_LOCK_SECONDS = 30.0
SIZE_TOLERANCE = Decimal("0.000001")  # relative difference below which sizes agree
# An order sent without an answer is closed as "not on the exchange" only after this long: an
# exchange may not list an order the moment it accepted it.
MISSING_ORDER_GRACE_SECONDS = 120


def _dec(v) -> Decimal:
    return to_decimal(v, "exchange value") if v is not None else ZERO


def reconcile(*, reason: str = "periodic", gateway=None) -> ReconciliationRun:
    """One reconciliation run (serialised across processes by a Redis lock)."""

    gateway = gateway or execution_gateway()
    exchange = exchange_id()
    lock = redis_client().lock(f"qt:{LOCK_KEY}", timeout=LOCK_SECONDS, sleep=0.1,
                               blocking_timeout=WAIT_FOR_LOCK_SECONDS)
    if not lock.acquire():
        return ReconciliationRun.objects.create(exchange=exchange, reason=reason, ok=False,
                                                error="another reconciliation held the lock too long",
                                                worker=f"{socket.gethostname()}:{os.getpid()}")
    run = ReconciliationRun.objects.create(exchange=exchange, reason=reason, trace_id=current_trace_id() or "",
                                           worker=f"{socket.gethostname()}:{os.getpid()}")
    mismatches: list[dict] = []
    actions: list[dict] = []
    try:
        _orders(gateway, exchange, mismatches, actions)
        _external_orders(gateway, exchange, mismatches, actions)
        _positions(gateway, exchange, mismatches, actions)
        balance, totals = _balances(gateway, exchange, mismatches)
        run.ok = True
        actions.append({"kind": "balances", "quote_total": totals})
    except errors.ExchangeError as exc:
        run.ok = False
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        log.error("reconciliation failed", error=run.error)
    except Exception as exc:  # a bug must not pass for a clean run
        run.ok = False
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        log.exception("reconciliation crashed")
    finally:
        try:
            lock.release()  # token-checked: never frees a lock another run took after ours expired
        except Exception:
            log.warning("reconciliation lock expired before release")
    run.mismatches, run.actions, run.finished_at = mismatches, actions, timezone.now()
    run.save()
    if mismatches:
        text = "; ".join(m["message"] for m in mismatches)
        publish(EventType.SYSTEM_ALERT, {"severity": "warning", "component": "reconciliation",
                                         "message": f"{len(mismatches)} mismatch(es) with {exchange}: {text}"[:2000],
                                         "service": "exec-risk-service"})
    if not run.ok:
        publish(EventType.SYSTEM_ALERT, {"severity": "critical", "component": "reconciliation",
                                         "message": f"reconciliation with {exchange} failed: {run.error}"[:2000],
                                         "service": "exec-risk-service"})
    else:
        order_svc.mark_reconciled()
        account_snapshot_refresh(reason="reconciliation", gateway=gateway, balance=balance)
    log.info("reconciliation", ok=run.ok, mismatches=len(mismatches), reason=reason)
    _report_run(run, mismatches)
    return run


def _report_run(run: ReconciliationRun, mismatches: list[dict]) -> None:
    """The run as the exec-risk service's `reconciliation` module in the health graph: clean, or
    DEGRADED with the count of mismatches (each also raised a system.alert) or the error."""
    facts = {"run_id": run.pk, "mismatches": len(mismatches)}
    if not run.ok:
        report_module(Service.EXEC_RISK.value, "reconciliation", "DEGRADED",
                      f"reconciliation with {run.exchange} failed: {run.error}", **facts)
    elif mismatches:
        kinds = ", ".join(sorted({m["kind"] for m in mismatches}))
        report_module(Service.EXEC_RISK.value, "reconciliation", "DEGRADED",
                      f"{len(mismatches)} mismatch(es) with {run.exchange} ({kinds})", **facts)
    else:
        report_module(Service.EXEC_RISK.value, "reconciliation", "HEALTHY", f"last run clean ({run.exchange})",
                      **facts)


def _orders(gateway, exchange: str, mismatches: list, actions: list) -> None:
    rows = list(Order.objects.filter(exchange=exchange, status__in=[
        OrderStatus.PENDING_SUBMIT, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNKNOWN,
    ]).select_related("symbol", "intent"))
    for o in rows:
        if o.status == OrderStatus.PENDING_SUBMIT and o.submit_attempts == 0:
            continue  # never sent: its intent's executor owns it
        found = order_svc.order_lookup(o, gateway)
        if found is None:
            age = (timezone.now() - o.updated_at).total_seconds()
            if o.acknowledged_at is None and age < MISSING_ORDER_GRACE_SECONDS:
                # Just sent, answer lost: an exchange may not list it yet. Judge on a later run.
                mismatches.append({"kind": "order_not_found_yet", "client_order_id": o.client_order_id,
                                   "message": f"order {o.client_order_id} ({o.status}) not on the exchange yet "
                                              f"({age:.0f}s after its last attempt): checked again next run"})
                continue
            reason = "the exchange has no such order"
            with transaction.atomic():
                Order.objects.filter(pk=o.pk).update(
                    status=OrderStatus.REJECTED if o.acknowledged_at is None else OrderStatus.CANCELLED,
                    status_reason=f"reconciliation: {reason}", updated_at=timezone.now())
            mismatches.append({"kind": "order_missing", "client_order_id": o.client_order_id,
                               "message": f"order {o.client_order_id} ({o.status}) not on the exchange: closed"})
            continue
        before = (o.status, o.filled)
        o = order_svc.order_apply(o, found)
        if (o.status, o.filled) != before:
            actions.append({"kind": "order_updated", "client_order_id": o.client_order_id, "status": o.status,
                            "filled": str(o.filled)})
            if before[0] in (OrderStatus.PENDING_SUBMIT, OrderStatus.UNKNOWN) or o.filled != before[1]:
                mismatches.append({"kind": "missed_fill" if o.filled != before[1] else "order_state",
                                   "client_order_id": o.client_order_id,
                                   "message": f"order {o.client_order_id}: database had {before[0]} filled "
                                              f"{before[1]}, exchange {o.status} filled {o.filled}"})
        if o.intent_id and o.intent.status == IntentStatus.WORKING:
            from trading.execution.services.intents import intent_wake

            intent_wake(o.intent_id)


def _external_orders(gateway, exchange: str, mismatches: list, actions: list) -> None:
    for data in gateway.fetch_open_orders():
        cid = data.get("clientOrderId") or ""
        oid = str(data.get("id") or "")
        row = Order.objects.filter(exchange=exchange, client_order_id=cid).first() if cid else None
        if row is None and oid:
            row = Order.objects.filter(exchange=exchange, exchange_order_id=oid).first()
        if row is not None:
            if not row.is_open:  # we closed it (e.g. "not found" earlier), the exchange has it open
                order_svc.order_apply(row, data)
                mismatches.append({"kind": "order_reopened", "client_order_id": row.client_order_id,
                                   "message": f"order {row.client_order_id} was {row.status} in the database but is "
                                              "open on the exchange: tracked again"})
            continue
        sym = Symbol.objects.filter(exchange=exchange, symbol=data.get("symbol")).first()
        if sym is None:
            mismatches.append({"kind": "external_order_unknown_symbol", "exchange_order_id": oid,
                               "message": f"external order {oid} on unknown symbol {data.get('symbol')}"})
            continue
        Order.objects.create(exchange=exchange, client_order_id=cid or f"ext-{oid}"[:64], exchange_order_id=oid,
                             symbol=sym, side=data.get("side") or Side.BUY, type=data.get("type") or OrderType.LIMIT,
                             amount=_dec(data.get("amount")), price=_dec(data.get("price")) or None,
                             filled=_dec(data.get("filled")), average_price=_dec(data.get("average")) or None,
                             status=OrderStatus.PARTIALLY_FILLED if _dec(data.get("filled")) > 0 else OrderStatus.OPEN,
                             origin=OrderOrigin.EXTERNAL, status_reason="imported by reconciliation",
                             acknowledged_at=timezone.now(), reduce_only=bool(data.get("reduceOnly")))
        mismatches.append({"kind": "external_order", "exchange_order_id": oid,
                           "message": f"order {oid} ({data.get('side')} {data.get('amount')} {data.get('symbol')}) "
                                      "was not placed by this system: imported as EXTERNAL"})


def _positions(gateway, exchange: str, mismatches: list, actions: list) -> None:
    theirs = {}
    for p in gateway.fetch_positions():
        contracts = _dec(p.get("contracts"))
        if contracts > 0:
            theirs[p["symbol"]] = p
    ours = {p.symbol.symbol: p for p in Position.objects.filter(exchange=exchange, status=PositionStatus.OPEN)
            .select_related("symbol")}
    now = timezone.now()
    for name, pos in ours.items():
        if pos.symbol.market_type == "spot":
            continue  # spot holdings are balances, not exchange positions
        if pos.exit_pending or Order.objects.filter(exchange=exchange, symbol=pos.symbol,
                                                    status__in=OPEN_ORDER_STATUSES).exists():
            continue  # an order in flight could fill between our reads: judge on the next run
        p = theirs.get(name)
        if p is None:
            with transaction.atomic():
                position_close_external(pos, reason="reconciliation", exit_price=None, now=now)
            mismatches.append({"kind": "position_missing", "symbol": name,
                               "message": f"{name} {pos.side} {pos.amount}: the exchange holds no position: closed"})
            continue
        size = _dec(p.get("contracts")) * _dec(p.get("contractSize") or 1)
        if p.get("side") != pos.side or abs(size - pos.amount) > SIZE_TOLERANCE * max(size, pos.amount):
            mismatches.append({"kind": "position_size", "symbol": name,
                               "message": f"{name}: database {pos.side} {pos.amount}, exchange {p.get('side')} {size}"})
        liq = p.get("liquidationPrice")
        if liq:
            Position.objects.filter(pk=pos.pk).update(liquidation_price=_dec(liq))
    for name, p in theirs.items():
        if name in ours:
            continue
        sym = Symbol.objects.filter(exchange=exchange, symbol=name).first()
        if sym is None:
            mismatches.append({"kind": "external_position_unknown_symbol", "symbol": name,
                               "message": f"exchange position on unknown symbol {name}"})
            continue
        if Order.objects.filter(exchange=exchange, symbol=sym, status__in=OPEN_ORDER_STATUSES).exists():
            continue
        size = _dec(p.get("contracts")) * _dec(p.get("contractSize") or 1)
        entry = _dec(p.get("entryPrice")) or _dec(p.get("markPrice"))
        if entry <= 0:
            continue
        Position.objects.create(exchange=exchange, symbol=sym, side=p.get("side") or PositionSide.LONG, amount=size,
                                max_amount=size, entry_price=entry, leverage=int(p.get("leverage") or 1),
                                liquidation_price=_dec(p.get("liquidationPrice")) or None, mark_price=entry,
                                entry_model="external", opened_at=now, trailing={"best_price": str(entry)})
        mismatches.append({"kind": "external_position", "symbol": name,
                           "message": f"{name} {p.get('side')} {size} on the exchange was not tracked: imported"})


def _balances(gateway, exchange: str, mismatches: list) -> tuple[dict, dict]:
    """Balances: a negative one is an error; each spot position we track must be covered by the
    exchange's balance of its base currency (spot holdings are balances, not positions).
    Returns the exchange's balance and its non-zero totals as text."""
    balance = gateway.fetch_balance()
    totals = {k: v for k, v in (balance.get("total") or {}).items() if v is not None}
    for currency, value in totals.items():
        if float(value) < 0:
            mismatches.append({"kind": "negative_balance", "currency": currency,
                               "message": f"{currency} balance is negative on the exchange: {value}"})
    held: dict[str, Decimal] = {}
    for pos in Position.objects.filter(exchange=exchange, status=PositionStatus.OPEN,
                                       symbol__market_type=MarketType.SPOT).select_related("symbol"):
        held[pos.symbol.base] = held.get(pos.symbol.base, ZERO) + pos.amount
    for base, amount in held.items():
        have = _dec(totals.get(base))
        if have + SIZE_TOLERANCE * amount < amount:
            mismatches.append({"kind": "balance_short", "currency": base,
                               "message": f"spot positions hold {amount} {base} but the exchange balance is {have}"})
    return balance, {k: str(v) for k, v in totals.items() if v}
