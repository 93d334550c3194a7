from io import StringIO

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_setup_demo_seeds_market_and_account_once(settings):
    from qtweb.events.models import Event
    from trading.models import Candle, PaperAccount, PaperBalance

    out = StringIO()
    call_command("setup_demo", "--days", "1", "--no-train", stdout=out)
    text = out.getvalue()
    assert "candles of 5m history" in text and "paper account 'default': 100,000 USDT" in text
    candles = Candle.objects.count()
    assert candles >= 30 * 288
    assert PaperBalance.objects.get(account__name="default", currency="USDT").free == 100000
    assert not Event.objects.exists()  # nothing to dispatch before the broker is up

    again = StringIO()
    call_command("setup_demo", "--days", "1", "--no-train", stdout=again)
    assert "history already seeded" in again.getvalue() and "paper account" not in again.getvalue()
    assert Candle.objects.count() == candles and PaperAccount.objects.count() == 1


def test_setup_demo_refuses_bad_days():
    with pytest.raises(CommandError, match="--days must be at least 1"):
        call_command("setup_demo", "--days", "0")
