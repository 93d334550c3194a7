"""Registry rows for tests that need a model version but no trained model."""
from datetime import UTC, datetime, timedelta


def model_version(model_type: str, number: int, status: str = "challenger"):
    from ai.models import ModelVersion

    t = datetime(2026, 10, 1, tzinfo=UTC)
    return ModelVersion.objects.create(
        model_type=model_type, version=number, status=status, created_at=t, training_start=t,
        training_end=t + timedelta(days=30), feature_version="2", feature_hash="h" * 64,
        artifact_path="/nonexistent", artifact_checksum="0" * 64)
