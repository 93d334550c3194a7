"""train_models end to end on a small seeded market: artifacts, registry, promotion, refusal."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ai import registry
from ai.models import ModelStatus, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(settings, tmp_path):
    from trading.simulator.service import seed_history

    settings.MODEL_ARTIFACTS_DIR = str(tmp_path / "models")
    seed_history(days=3, seed=4)


def test_train_models_registers_promotes_and_serves(market):
    out = StringIO()
    call_command("train_models", "--max-epochs", "1", "--sample-every", "4", stdout=out)
    text = out.getvalue()
    assert text.count("PROMOTED") == 4, text
    champions = {m.model_type: m for m in registry.champions()}
    assert set(champions) == {"xgboost", "lightgbm", "nhits", "patchtst"}
    for mv in champions.values():
        assert mv.metrics["n_train"] > 0 and 0 <= mv.metrics["accuracy"] <= 1
        assert mv.training_end > mv.training_start and len(mv.artifact_checksum) == 64

    from ai.features.compute import FEATURE_VERSION

    feature_hash = next(iter(champions.values())).feature_hash
    serving, problems = registry.load_champions(feature_version=FEATURE_VERSION, feature_hash=feature_hash)
    assert {s.version.model_type for s in serving} == set(champions) and problems == {}

    # a second run with --promote never leaves the champions in place
    call_command("train_models", "--models", "xgboost", "--promote", "never", "--sample-every", "4", stdout=StringIO())
    assert ModelVersion.objects.filter(model_type="xgboost", status=ModelStatus.CHALLENGER).count() == 1
    assert registry.champions()[-1].version == 1 or champions["xgboost"].status == ModelStatus.CHAMPION


def test_a_corrupted_champion_is_refused_at_load_and_the_others_serve(market):
    from pathlib import Path

    call_command("train_models", "--models", "xgboost,lightgbm", "--sample-every", "4", stdout=StringIO())
    xgb = ModelVersion.objects.get(model_type="xgboost", status=ModelStatus.CHAMPION)
    victim = next(p for p in Path(xgb.artifact_path).iterdir() if p.name != "metadata.json")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    from ai.features.compute import FEATURE_VERSION

    serving, problems = registry.load_champions(feature_version=FEATURE_VERSION, feature_hash=xgb.feature_hash)
    assert [s.version.model_type for s in serving] == ["lightgbm"]
    assert "xgboost" in problems and "v1" in problems["xgboost"]
    _, mismatched = registry.load_champions(feature_version=FEATURE_VERSION, feature_hash="0" * 64)
    assert "lightgbm" in mismatched


def test_bad_arguments_are_named(market):
    with pytest.raises(CommandError, match="unknown model type"):
        call_command("train_models", "--models", "arima")
    with pytest.raises(CommandError, match="positive"):
        call_command("train_models", "--horizon", "0")
