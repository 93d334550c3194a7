"""manage.py setup_demo: what `make run` needs on a fresh machine to show a live market.

Idempotent: seeds the simulated market (SIM_SEED, --days of 5m history) unless it has
history, creates the paper account `default` with a starting balance unless it exists, and
trains the four forecasters (a quick demo configuration) when no champion serves yet.
It publishes nothing (make run calls it before the broker is up): the first universe scan
runs when beat starts, and the feed continues the market from where the seed ended.
"""
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# Starting balance of the demo paper account (USDT).
DEMO_BALANCE_USDT = Decimal("100000")
DEMO_ACCOUNT = "default"  # the account PaperGateway() trades on


class Command(BaseCommand):
    help = "Seed the simulated market and the paper account (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=60, help="days of 5m history to generate (default 60)")
        parser.add_argument("--no-train", action="store_true", help="do not train the demo models")

    def handle(self, *args, days, no_train, **options):
        from trading.exchanges.paper import create_account
        from trading.models import PaperAccount
        from trading.simulator import service as simulator

        if days < 1:
            raise CommandError(f"--days must be at least 1 (got {days})")
        if settings.MARKET_EXCHANGE != "paper":
            self.stdout.write(f"MARKET_EXCHANGE={settings.MARKET_EXCHANGE}: no simulated market to seed")
            return
        result = simulator.seed_history(days=days, seed=settings.SIM_SEED, show_progress=True)
        if result.created:
            self.stdout.write(f"market: {result.symbols} symbols, {result.rows:,} candles of 5m history")
        else:
            self.stdout.write("market: history already seeded")
        if not PaperAccount.objects.filter(name=DEMO_ACCOUNT).exists():
            create_account(DEMO_ACCOUNT, {"USDT": DEMO_BALANCE_USDT})
            self.stdout.write(f"paper account {DEMO_ACCOUNT!r}: {DEMO_BALANCE_USDT:,} USDT")
        from ai.registry import champions

        if no_train or champions():
            return
        from django.core.management import call_command

        # Quick demo models: one bar in 6 as a sample, at most 3 epochs for the neural nets
        # (about two minutes on 2 cores); `manage.py train_models` trains properly later.
        self.stdout.write("training the demo models (first run only) ...")
        call_command("train_models", "--sample-every", "6", "--max-epochs", "3", stdout=self.stdout)
