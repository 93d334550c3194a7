"""The dashboard's learning panel in a real browser (daphne, Channels, headless Chromium): the
champions' drift scores and the retraining jobs from the API, and learning.event arriving over
the websocket, listed live and re-reading the tables without a reload."""
from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from tests import test_dashboard_browser as dashboard_browser
from tests.test_dashboard_browser import CHROMIUM, WAIT_MS, off_loop
from tests.test_dashboard_risk_browser import PASSWORD, _reset_caches, login

daphne_url = dashboard_browser.daphne_url
browser = dashboard_browser.browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not installed (run `make browser`; never `playwright install`)"),
]


def _seed():
    from django.contrib.auth import get_user_model

    from ai.models import ModelStatus, ModelVersion
    from analytics.models import DriftCheck

    get_user_model().objects.create_user("learner", password=PASSWORD)
    t = datetime.now(UTC)
    mv = ModelVersion.objects.create(
        model_type="xgboost", version=4, status=ModelStatus.CHAMPION, created_at=t,
        training_start=t - timedelta(days=9), training_end=t - timedelta(days=1), feature_version="2",
        feature_hash="h" * 64, artifact_path="/nonexistent", artifact_checksum="0" * 64)
    DriftCheck.objects.create(model_version=mv, model_type="xgboost", checked_at=t, drift_score=0.07, threshold=0.15,
                              detected=False, parts={"feature_psi": 0.07})
    return mv


def _drift_and_job(mv):
    from ai.registry import learning_event
    from analytics.learning import jobs
    from analytics.models import DriftCheck

    job = jobs.request_retraining(model_type="xgboost", trigger="drift", reason="browser test")
    DriftCheck.objects.create(model_version=mv, model_type="xgboost", checked_at=datetime.now(UTC), drift_score=0.41,
                              threshold=0.15, detected=True, parts={"feature_psi": 0.41}, job=job,
                              action=f"retraining job {job.pk} queued")
    learning_event("drift_detected", mv, "browser test", drift_score=0.41, threshold=0.15,
                   parts={"feature_psi": 0.41}, job_id=job.pk)
    return job.pk


def test_the_learning_panel_shows_drift_and_jobs_and_follows_learning_events(daphne_url, paused_workers, browser):
    from playwright.sync_api import expect

    off_loop(_reset_caches)
    mv = off_loop(_seed)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    login(page, daphne_url, "learner")
    row = page.locator("#drift-body tr[data-model-type=xgboost]")
    expect(row).to_have_attribute("data-detected", "false", timeout=WAIT_MS)
    expect(row.locator(".col-drift")).to_have_text("0.070")
    expect(page.locator("#jobs-body tr")).to_have_count(0)
    expect(page.locator("#ws-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    page.evaluate("window.__notReloaded = true")

    job_id = off_loop(_drift_and_job, mv)
    event = page.locator("#learning-events li[data-kind=drift_detected]")
    expect(event).to_contain_text("drift 0.410 > 0.15", timeout=WAIT_MS)
    expect(event).to_contain_text(f"job {job_id}")
    expect(row).to_have_attribute("data-detected", "true", timeout=WAIT_MS)
    expect(row.locator(".col-drift")).to_have_text("0.410")
    job_row = page.locator(f"#jobs-body tr[data-job-id='{job_id}']")
    expect(job_row).to_have_attribute("data-status", "queued", timeout=WAIT_MS)
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot(path="/tmp/dashboard-learning.png", full_page=True)
