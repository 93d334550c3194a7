import pytest


@pytest.fixture
def paper_market(db, settings):
    """The paper exchange with four markets, fresh prices and 100k USDT (tests/support/execution.py)."""
    from tests.support.execution import build_market
    from trading.execution.gateway import use_gateway

    settings.MARKET_EXCHANGE = "paper"
    settings.EXECUTION_EXCHANGE = ""
    market = build_market()
    yield market
    use_gateway(None)
