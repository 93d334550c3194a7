"""The analytics-os service's HTTP API: one module per area (routes in qtweb/urls.py)."""
from analytics.api.alerting import (  # noqa: F401
    AlertFiringListView,
    AlertRuleDetailView,
    AlertRuleListView,
)
from analytics.api.health import (  # noqa: F401
    HealingActionListView,
    HealingResumeView,
    HealthGraphView,
    HealthTransitionListView,
)
from analytics.api.learning import (  # noqa: F401
    DriftCheckListView,
    DriftSummaryView,
    RetrainingJobDetailView,
    RetrainingJobListView,
)
from analytics.api.notifications import (  # noqa: F401
    NotificationChannelDetailView,
    NotificationChannelListView,
    NotificationChannelTestView,
    NotificationDeliveryListView,
)
from analytics.api.orchestration import (  # noqa: F401
    HfosDecisionDetailView,
    HfosDecisionListView,
    PortfolioStateView,
    PositionAssessmentListView,
)
