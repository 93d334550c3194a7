"""The learning manager's API, RPC handlers and admin: jobs requested, read and refused by name."""
import pytest
from django.contrib.auth import get_user_model

from analytics import rpc as learning_rpc
from analytics.models import RetrainingJob
from tests.support.learning import model_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client):
    get_user_model().objects.create_user("viewer", password="pw-123456")
    client.login(username="viewer", password="pw-123456")
    return client


def test_staff_requests_a_job_reads_it_and_a_second_is_refused_with_the_active_one(admin_client, clean_cache):
    mv = model_version("xgboost", 5, "champion")
    r = admin_client.post("/api/learning/jobs/", {"model_id": str(mv.pk), "reason": "weekend check"},
                          content_type="application/json")
    assert r.status_code == 201, r.content
    job = r.json()
    assert job["model_type"] == "xgboost" and job["status"] == "queued" and job["trigger"] == "manual"
    assert job["requested_by"] == "admin" and job["reason"] == "weekend check"
    again = admin_client.post("/api/learning/jobs/", {"model_id": "xgboost"}, content_type="application/json")
    assert again.status_code == 409 and f"job {job['id']}" in again.json()["detail"]
    assert admin_client.get(f"/api/learning/jobs/{job['id']}/").json()["status"] == "queued"
    listed = admin_client.get("/api/learning/jobs/", {"model_type": "xgboost", "status": "queued"}).json()
    assert [j["id"] for j in listed["results"]] == [job["id"]]
    assert RetrainingJob.objects.count() == 1


def test_bad_requests_name_what_was_wrong_and_queue_nothing(admin_client, clean_cache):
    for body, field_text in (({"model_id": "quantum-oracle"}, "unknown model 'quantum-oracle'"),
                             ({"model_id": "424242"}, "no model version with id 424242"),
                             ({}, "This field is required")):
        r = admin_client.post("/api/learning/jobs/", body, content_type="application/json")
        assert r.status_code == 400 and field_text in str(r.json()["model_id"]), r.content
    bad_filter = admin_client.get("/api/learning/jobs/", {"status": "sleeping"})
    assert bad_filter.status_code == 400 and "status" in bad_filter.json()
    assert admin_client.get("/api/learning/jobs/999999/").status_code == 404
    assert not RetrainingJob.objects.exists()


def test_reads_need_a_login_and_requests_need_staff(client, viewer, clean_cache):
    from django.test import Client

    anonymous = Client()
    assert anonymous.get("/api/learning/jobs/").status_code in (401, 403)
    assert anonymous.get("/api/learning/drift/").status_code in (401, 403)
    assert viewer.get("/api/learning/jobs/").status_code == 200
    assert viewer.get("/api/learning/drift/").json() == []
    assert viewer.post("/api/learning/jobs/", {"model_id": "xgboost"},
                       content_type="application/json").status_code == 403
    assert not RetrainingJob.objects.exists()


def test_rpc_handlers_return_the_job_and_refuse_bad_input_with_a_value_error(clean_cache):
    job = learning_rpc.trigger_retraining("lightgbm")
    assert job["status"] == "queued" and job["model_type"] == "lightgbm" and job["requested_by"] == "rpc"
    assert learning_rpc.get_retraining_job(job["job_id"])["job_id"] == job["job_id"]
    with pytest.raises(ValueError, match="already queued"):
        learning_rpc.trigger_retraining("lightgbm")
    with pytest.raises(ValueError, match="unknown model"):
        learning_rpc.trigger_retraining("tarot")
    with pytest.raises(ValueError, match="job_id must be a job number"):
        learning_rpc.get_retraining_job("seven")


def test_the_admin_requests_a_job_through_the_learning_manager_and_shows_it(admin_client, clean_cache):
    r = admin_client.post("/admin/analytics/retrainingjob/add/", {"model_type": "patchtst", "reason": "by hand"})
    assert r.status_code == 302, r.content[:2000]
    job = RetrainingJob.objects.get()
    assert (job.model_type, job.trigger, job.requested_by, job.reason) == ("patchtst", "manual", "admin", "by hand")
    refused = admin_client.post("/admin/analytics/retrainingjob/add/", {"model_type": "patchtst"})
    assert refused.status_code == 200 and b"already queued" in refused.content
    assert RetrainingJob.objects.count() == 1
    page = admin_client.get(f"/admin/analytics/retrainingjob/{job.pk}/change/")
    assert page.status_code == 200 and b"patchtst" in page.content
    assert admin_client.get("/admin/analytics/driftcheck/").status_code == 200
    assert admin_client.get("/admin/analytics/predictionoutcome/").status_code == 200
