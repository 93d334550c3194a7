"""Every admin list page loads for an operator, and exchange secrets never show up there."""
import pytest
from django.contrib import admin
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_every_registered_admin_changelist_loads(admin_client):
    from django.core.management import call_command

    call_command("setup_demo", "--days", "1", "--no-train", verbosity=0)
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        resp = admin_client.get(url)
        assert resp.status_code == 200, url


def test_admin_pages_never_show_exchange_keys(admin_client, monkeypatch):
    monkeypatch.setenv("EXCHANGE_API_KEY", "key-that-must-not-leak-123")
    monkeypatch.setenv("EXCHANGE_API_SECRET", "secret-that-must-not-leak-456")
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        body = admin_client.get(url).content.decode()
        assert "must-not-leak" not in body, url
