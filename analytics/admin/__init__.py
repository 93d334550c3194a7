"""The analytics-os service in the admin: one module per area."""
from analytics.admin import (
    alerting,  # noqa: F401
    health,  # noqa: F401
    learning,  # noqa: F401
    notifications,  # noqa: F401
    orchestration,  # noqa: F401
)
