import pytest


@pytest.fixture
def clean_risk_cache():
    """The policy and mode caches live in Redis, which outlives each test's database.

    Not autouse: the domain tests in this folder are pure and should not need Redis; the
    modules that go through the services ask for it with `pytest.mark.usefixtures`."""
    from risk.services.policy import policy_invalidate
    from tests.support.execution import clear_app_cache

    clear_app_cache()
    policy_invalidate()
    yield
    clear_app_cache()
    policy_invalidate()
