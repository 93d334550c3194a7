"""The ai app's feature layer (pure numpy and scipy.signal; Django only in `dataset.bars_from_db`).

- compute: indicators per symbol and across the universe, the feature set's version and hash,
  the validators (NaN/inf, too little history);
- labels: direction over a horizon with a fee-covering neutral band;
- splits: time-ordered walk-forward splits with purge and embargo;
- dataset: `Dataset` for training, `latest_rows` for inference.
"""
from ai.features.compute import (
    DEFAULT_LOOKBACK,
    DEFAULT_PARAMS,
    FEATURE_VERSION,
    INFERENCE_BARS,
    BadBars,
    FeatureError,
    FeatureParams,
    FeatureValueError,
    compute_symbol_features,
    compute_universe_features,
    feature_names,
    feature_set_hash,
    insufficient_history,
    min_history_bars,
    validate_features,
)
from ai.features.dataset import Dataset, LatestRows, build_dataset, dataset_from_db, latest_rows
from ai.features.labels import DEFAULT_BAND, direction_labels, forward_log_return, neutral_band
from ai.features.splits import SplitError, train_validation_split, walk_forward

__all__ = [
    "DEFAULT_BAND", "DEFAULT_LOOKBACK", "DEFAULT_PARAMS", "FEATURE_VERSION", "INFERENCE_BARS", "BadBars",
    "Dataset", "FeatureError", "FeatureParams", "FeatureValueError", "LatestRows", "SplitError", "build_dataset",
    "compute_symbol_features", "compute_universe_features", "dataset_from_db", "direction_labels",
    "feature_names", "feature_set_hash", "forward_log_return", "insufficient_history", "latest_rows",
    "min_history_bars", "neutral_band", "train_validation_split", "validate_features", "walk_forward",
]
