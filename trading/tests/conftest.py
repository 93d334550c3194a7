import pytest


@pytest.fixture
def paper_market(db, settings):
    """The paper exchange with four markets, fresh prices and 100k USDT (tests/support/execution.py)."""
    from tests.support.execution import build_market
    from trading.exchanges.account import use_gateway

    settings.MARKET_EXCHANGE = "paper"
    settings.EXECUTION_EXCHANGE = ""
    market = build_market()
    yield market
    use_gateway(None)


@pytest.fixture
def fake():
    """A fake Binance on loopback (tests/support/fake_binance.py); fails the test if ccxt called
    an endpoint the fake does not serve."""
    from tests.support.fake_binance import FakeBinance

    with FakeBinance() as server:
        yield server
    assert server.unknown_paths == [], "ccxt called endpoints the fake does not serve"


@pytest.fixture
def creds(fake, monkeypatch):
    """The fake's API key and secret in the environment, where the ccxt gateway reads them."""
    monkeypatch.setenv("EXCHANGE_API_KEY", fake.api_key)
    monkeypatch.setenv("EXCHANGE_API_SECRET", fake.api_secret)
    return fake.api_key, fake.api_secret
