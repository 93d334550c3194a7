"""Model artifacts: one directory per trained model.

    <dir>/metadata.json       what the model is and what it was trained on (below)
    <dir>/<model file>        model.ubj (xgboost), model.txt (lightgbm), weights.pt (torch state dict)
    <dir>/calibration.json    the probability calibrator fitted on the validation set

metadata.json holds model_type, version, feature_version, feature_hash, training_window
({"start_ms", "end_ms"}), metrics, params, input_kind / input_shape, library versions, created_at
(UTC, ISO 8601), `files` (sha256 of every other file) and `artifact_sha256`: the sha256 of the
canonical JSON of the metadata itself without that key. It covers the metadata and, through
`files`, every byte of the artifact: it is the one checksum a registry needs to store.

Reading verifies everything before anything is deserialized: the metadata's own checksum, then
each file's sha256 on the bytes that will be parsed (read once, so a file swapped after the check
is never used); only then the model type and the feature version and hash the caller expects.
Any failure is an `ArtifactError`: `ArtifactCorrupt` (bytes differ from what was written, files
missing, unreadable) or `ArtifactMismatch` (intact, but not what the caller can use).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
_CHECKSUM_KEY = "artifact_sha256"
_LIBRARIES = ("numpy", "scikit-learn", "torch", "xgboost", "lightgbm")
# xgboost is installed as the "xgboost-cpu" distribution here.
_DISTRIBUTION_ALIASES = {"xgboost": ("xgboost", "xgboost-cpu")}


class ArtifactError(Exception):
    """An artifact cannot be used; the message names the artifact and what is wrong."""


class ArtifactCorrupt(ArtifactError):
    """The artifact's bytes are not what was written: checksum mismatch, missing or unreadable file."""


class ArtifactMismatch(ArtifactError):
    """The artifact is intact but does not fit: another feature version or hash, model type or format."""


def library_versions() -> dict[str, str]:
    """Versions of python and the model libraries, read from package metadata (imports nothing)."""
    out = {"python": platform.python_version()}
    for lib in _LIBRARIES:
        version = "absent"
        for dist in _DISTRIBUTION_ALIASES.get(lib, (lib,)):
            try:
                version = importlib_metadata.version(dist)
                break
            except importlib_metadata.PackageNotFoundError:
                continue
        out[lib] = version
    return out


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metadata_checksum(meta: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of `meta` without artifact_sha256."""
    body = {k: v for k, v in meta.items() if k != _CHECKSUM_KEY}
    return sha256_hex(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())


def training_window(t_ms) -> dict[str, int]:
    """{"start_ms", "end_ms"} of the training rows' timestamps (int64 milliseconds)."""
    import numpy as np

    t = np.asarray(t_ms, dtype=np.int64)
    if t.size == 0:
        raise ValueError("training_window: no timestamps")
    return {"start_ms": int(t.min()), "end_ms": int(t.max())}


def _check_file_name(name: str) -> None:
    if not name or name != os.path.basename(name) or name in (".", "..", METADATA_FILE):
        raise ValueError(f"invalid artifact file name {name!r}")


def write_artifact(directory: str | os.PathLike, files: Mapping[str, bytes], metadata: Mapping[str, Any]) -> dict:
    """Write `files` and metadata.json (with checksums, library versions, created_at added) into
    `directory`, which must not exist or be empty. Written to a temporary sibling and renamed, so
    a crash never leaves a half-written artifact under the final name. Returns the metadata."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"artifact directory {directory} exists and is not empty")
    for name in files:
        _check_file_name(name)
    meta = dict(metadata)
    meta["format_version"] = FORMAT_VERSION
    meta.setdefault("created_at", datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))
    meta["library_versions"] = library_versions()
    meta["files"] = {name: sha256_hex(data) for name, data in sorted(files.items())}
    meta.pop(_CHECKSUM_KEY, None)
    meta[_CHECKSUM_KEY] = metadata_checksum(meta)  # raises ValueError on NaN/inf or non-JSON values
    text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n"

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / METADATA_FILE).write_text(text, encoding="utf-8")
        if directory.exists():
            directory.rmdir()  # empty (checked above)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def read_metadata(directory: str | os.PathLike) -> dict:
    """metadata.json, with its own checksum verified (the files are not read)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"artifact {directory}: no such directory")
    path = directory / METADATA_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactCorrupt(f"artifact {directory}: {METADATA_FILE} is missing") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactCorrupt(f"artifact {directory}: {METADATA_FILE} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ArtifactCorrupt(f"artifact {directory}: {METADATA_FILE} is not a JSON object")
    recorded = meta.get(_CHECKSUM_KEY)
    if not isinstance(recorded, str):
        raise ArtifactCorrupt(f"artifact {directory}: {METADATA_FILE} has no {_CHECKSUM_KEY}")
    try:
        actual = metadata_checksum(meta)
    except ValueError as exc:
        raise ArtifactCorrupt(f"artifact {directory}: {METADATA_FILE} holds invalid values ({exc})") from None
    if actual != recorded:
        raise ArtifactCorrupt(f"artifact {directory}: {METADATA_FILE} was modified after it was written "
                              f"(content sha256 {actual[:12]}..., recorded {recorded[:12]}...)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactMismatch(f"artifact {directory}: format_version {meta.get('format_version')!r}, "
                               f"this code reads {FORMAT_VERSION}")
    if not isinstance(meta.get("files"), dict):
        raise ArtifactCorrupt(f"artifact {directory}: {METADATA_FILE} has no file list")
    return meta


def read_artifact(directory: str | os.PathLike, *, expected_feature_version: str, expected_feature_hash: str,
                  expected_model_type: str | None = None) -> tuple[dict, dict[str, bytes]]:
    """Verify and read an artifact: (metadata, {file name: bytes}). The bytes returned are the
    ones whose sha256 was checked. Raises ArtifactCorrupt / ArtifactMismatch naming the problem."""
    directory = Path(directory)
    meta = read_metadata(directory)
    files: dict[str, bytes] = {}
    for name, expected in sorted(meta["files"].items()):
        try:
            _check_file_name(name)
        except ValueError:
            raise ArtifactCorrupt(f"artifact {directory}: invalid file name {name!r} in {METADATA_FILE}") from None
        try:
            data = (directory / name).read_bytes()
        except FileNotFoundError:
            raise ArtifactCorrupt(f"artifact {directory}: file {name} is missing") from None
        actual = sha256_hex(data)
        if actual != expected:
            raise ArtifactCorrupt(f"artifact {directory}: checksum mismatch for {name} "
                                  f"(sha256 {actual[:12]}..., metadata says {str(expected)[:12]}...)")
        files[name] = data
    if expected_model_type is not None and meta.get("model_type") != expected_model_type:
        raise ArtifactMismatch(f"artifact {directory}: model_type is {meta.get('model_type')!r}, "
                               f"expected {expected_model_type!r}")
    if meta.get("feature_version") != expected_feature_version:
        raise ArtifactMismatch(f"artifact {directory}: feature_version is {meta.get('feature_version')!r}, "
                               f"expected {expected_feature_version!r}")
    if meta.get("feature_hash") != expected_feature_hash:
        raise ArtifactMismatch(f"artifact {directory}: feature_hash is {meta.get('feature_hash')!r}, "
                               f"expected {expected_feature_hash!r}")
    return meta, files
