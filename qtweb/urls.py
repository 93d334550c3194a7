from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from ai import api as ai_api
from qtweb import views

api = [
    path("traces/<str:trace_id>/", views.TraceView.as_view(), name="trace-detail"),
    path("events/", views.EventListView.as_view(), name="event-list"),
    path("reports/", ai_api.EvaluationReportListView.as_view(), name="report-list"),
    path("models/", ai_api.ModelVersionListView.as_view(), name="model-list"),
    path("models/<int:pk>/promote/", ai_api.ModelVersionActionView.as_view(action="promote"), name="model-promote"),
    path("models/<int:pk>/retire/", ai_api.ModelVersionActionView.as_view(action="retire"), name="model-retire"),
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
