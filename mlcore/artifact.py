"""The model artifact: the one place that writes it and the one place that reads it.

The ``.pt`` file is a dict of plain types and tensors, so that it loads with
``torch.load(..., weights_only=True)``: unpickling arbitrary classes would run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from mlcore.errors import ArtifactError
from mlcore.files import atomic_write

ARTIFACT_FORMAT = "intentflow.intent-classifier"
FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "format", "format_version", "base_model", "model_config", "state_dict", "labels", "tokenizer",
    "max_length", "temperature", "threshold", "train_config", "metrics", "dataset_fingerprint",
    "created_at", "versions",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "torch": str(torch.__version__)}
    for name in ("transformers", "tokenizers", "datasets"):
        try:
            versions[name] = str(__import__(name).__version__)
        except ImportError:  # pragma: no cover
            pass
    return versions


def build_artifact(
    *,
    base_model: str,
    model_config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    labels: list[str],
    tokenizer: dict[str, Any],
    max_length: int,
    temperature: float,
    threshold: float,
    train_config: dict[str, Any],
    metrics: dict[str, Any],
    dataset_fingerprint: str,
    in_scope_rule: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the artifact dict. Metadata goes through JSON so only plain types remain.

    ``in_scope_rule`` (optional: older artifacts and probability-rule runs have none) holds the
    in-scope score's two tensors (``projection``, ``projected_means``) and its ``scorer`` (plain
    types, mlcore.ood.InScopeScorer.to_dict)."""
    plain = json.loads(json.dumps({
        "base_model": base_model, "model_config": model_config, "labels": list(labels), "tokenizer": tokenizer,
        "max_length": int(max_length), "temperature": float(temperature), "threshold": float(threshold),
        "train_config": train_config, "metrics": metrics, "dataset_fingerprint": dataset_fingerprint,
    }))
    return {
        "format": ARTIFACT_FORMAT,
        "format_version": FORMAT_VERSION,
        **plain,
        "state_dict": {name: tensor.detach().to("cpu").contiguous() for name, tensor in state_dict.items()},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        **({"in_scope_rule": {
            "projection": in_scope_rule["projection"].detach().to("cpu", torch.float32).contiguous(),
            "projected_means": in_scope_rule["projected_means"].detach().to("cpu", torch.float32).contiguous(),
            "scorer": json.loads(json.dumps(in_scope_rule["scorer"])),
        }} if in_scope_rule is not None else {}),
    }


def save_artifact(artifact: dict[str, Any], path: str | Path) -> str:
    """Write atomically (temp file in the same folder, then rename); return the file's SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised in memory first: torch's zip writer reports a failed write (a full disk) as an
    # opaque RuntimeError, while a plain write says which (ENOSPC, EFBIG, EACCES).
    buffer = io.BytesIO()
    torch.save(artifact, buffer)
    try:
        atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))
    except OSError as exc:
        raise ArtifactError(f"The artifact could not be written to {path}: {exc.strerror or exc} "
                            f"({len(buffer.getbuffer())} bytes; is the disk full?)") from exc
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_artifact(path: str | Path) -> dict[str, Any]:
    """Read and check an artifact; every failure is an ``ArtifactError`` with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"Model artifact not found: {path}.")
    try:
        artifact = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and runtime errors all mean the same thing here
        raise ArtifactError(
            f"{path} is not a readable model artifact (truncated, corrupt, or not written by mlcore): {type(exc).__name__}."
        ) from None
    return check_artifact(artifact, source=str(path))


def check_artifact(artifact: Any, *, source: str) -> dict[str, Any]:
    if not isinstance(artifact, dict) or artifact.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{source} is not an intent-classifier artifact (foreign file format).")
    version = artifact.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{source} has artifact format version {version!r}; this code reads version {FORMAT_VERSION}.")
    missing = [key for key in REQUIRED_KEYS if key not in artifact]
    if missing:
        raise ArtifactError(f"{source} is incomplete: missing {', '.join(missing)}.")
    if not isinstance(artifact["state_dict"], dict) or not all(isinstance(t, torch.Tensor) for t in artifact["state_dict"].values()):
        raise ArtifactError(f"{source} has a malformed state dict.")
    if not isinstance(artifact["labels"], list) or len(artifact["labels"]) < 2:
        raise ArtifactError(f"{source} must list at least two intents.")
    rule = artifact.get("in_scope_rule")
    if rule is not None and not (isinstance(rule, dict) and isinstance(rule.get("projection"), torch.Tensor)
                                 and isinstance(rule.get("projected_means"), torch.Tensor) and isinstance(rule.get("scorer"), dict)):
        raise ArtifactError(f"{source} has a malformed in-scope rule.")
    return artifact
