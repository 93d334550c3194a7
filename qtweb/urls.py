from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from ai import api as ai_api
from analytics import api as analytics_api
from qtweb import views
from risk import api as risk_api
from trading import api as trading_api

risk = [
    path("policy/", risk_api.PolicyView.as_view(), name="risk-policy"),
    path("policy/versions/", risk_api.PolicyVersionListView.as_view(), name="risk-policy-versions"),
    path("mode/", risk_api.ModeView.as_view(), name="risk-mode"),
    path("emergency-stop/", risk_api.EmergencyStopView.as_view(), name="risk-emergency-stop"),
    path("decisions/", risk_api.RiskDecisionListView.as_view(), name="risk-decisions"),
    path("validate/", risk_api.ValidateRiskView.as_view(), name="risk-validate"),
]

trading = [
    path("positions/", trading_api.PositionListView.as_view(), name="trading-positions"),
    # ?symbol=BTC/USDT:USDT, or the symbol in the path as is (slashes and colons included)
    path("positions/status/", trading_api.PositionStatusView.as_view(), name="trading-position-status"),
    path("positions/<path:symbol>/", trading_api.PositionStatusView.as_view(), name="trading-position"),
    path("orders/", trading_api.OrderListView.as_view(), name="trading-orders"),
    path("intents/", trading_api.ExecutionIntentListView.as_view(), name="trading-intents"),
    path("reconciliations/", trading_api.ReconciliationRunListView.as_view(), name="trading-reconciliations"),
]

learning = [
    path("jobs/", analytics_api.RetrainingJobListView.as_view(), name="learning-jobs"),
    path("jobs/<int:pk>/", analytics_api.RetrainingJobDetailView.as_view(), name="learning-job"),
    path("drift/", analytics_api.DriftSummaryView.as_view(), name="learning-drift"),
    path("drift/checks/", analytics_api.DriftCheckListView.as_view(), name="learning-drift-checks"),
]

alerts = [
    path("rules/", analytics_api.AlertRuleListView.as_view(), name="alert-rules"),
    path("rules/<int:pk>/", analytics_api.AlertRuleDetailView.as_view(), name="alert-rule"),
    path("firings/", analytics_api.AlertFiringListView.as_view(), name="alert-firings"),
]

notifications = [
    path("channels/", analytics_api.NotificationChannelListView.as_view(), name="notification-channels"),
    path("channels/<int:pk>/", analytics_api.NotificationChannelDetailView.as_view(), name="notification-channel"),
    path("channels/<int:pk>/test/", analytics_api.NotificationChannelTestView.as_view(),
         name="notification-channel-test"),
    path("deliveries/", analytics_api.NotificationDeliveryListView.as_view(), name="notification-deliveries"),
]

health = [
    path("graph/", analytics_api.HealthGraphView.as_view(), name="health-graph"),
    path("transitions/", analytics_api.HealthTransitionListView.as_view(), name="health-transitions"),
    path("healing/", analytics_api.HealingActionListView.as_view(), name="health-healing"),
    path("healing/resume/", analytics_api.HealingResumeView.as_view(), name="health-healing-resume"),
]

orchestration = [
    path("portfolio/", analytics_api.PortfolioStateView.as_view(), name="orchestration-portfolio"),
    path("decisions/", analytics_api.HfosDecisionListView.as_view(), name="orchestration-decisions"),
    path("decisions/<int:pk>/", analytics_api.HfosDecisionDetailView.as_view(), name="orchestration-decision"),
    path("positions/", analytics_api.PositionAssessmentListView.as_view(), name="orchestration-positions"),
]

api = [
    path("traces/<str:trace_id>/", views.TraceView.as_view(), name="trace-detail"),
    path("events/", views.EventListView.as_view(), name="event-list"),
    path("reports/", ai_api.EvaluationReportListView.as_view(), name="report-list"),
    path("models/", ai_api.ModelVersionListView.as_view(), name="model-list"),
    path("models/<int:pk>/promote/", ai_api.ModelVersionActionView.as_view(action="promote"), name="model-promote"),
    path("models/<int:pk>/retire/", ai_api.ModelVersionActionView.as_view(action="retire"), name="model-retire"),
    path("meta-strategy/", ai_api.MetaStrategyStateView.as_view(), name="meta-strategy"),
    path("meta-strategy/decisions/", ai_api.MetaStrategyDecisionListView.as_view(), name="meta-strategy-decisions"),
    path("risk/", include(risk)),
    path("trading/", include(trading)),
    path("learning/", include(learning)),
    path("alerts/", include(alerts)),
    path("notifications/", include(notifications)),
    path("health/", include(health)),
    path("orchestration/", include(orchestration)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/", views.health),
    path("metrics", views.metrics_view, name="metrics"),
    path("api/", include(api)),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("analytics.urls")),
]
