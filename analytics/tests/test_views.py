"""The dashboard page says, when the market is simulated, that its edge is planted."""
import pytest


@pytest.mark.django_db
def test_the_dashboard_says_the_simulated_markets_edge_is_planted(admin_client, settings):
    from trading.simulator.service import seed_history

    settings.MARKET_EXCHANGE = "paper"
    page = admin_client.get("/").content.decode()
    assert "its edge is planted" in page and "not seeded yet" in page
    seed_history(days=1, seed=1, alpha=0.5)
    page = admin_client.get("/").content.decode()
    assert "= 0.5" in page and "not seeded yet" not in page


@pytest.mark.django_db
def test_no_planted_edge_note_on_a_real_exchange(admin_client, settings):
    settings.MARKET_EXCHANGE = "binanceusdm"
    assert "planted" not in admin_client.get("/").content.decode()
