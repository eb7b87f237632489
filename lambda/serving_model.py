"""The warm-container model cache: one predictor per process, loaded once, swapped atomically.

Mangum runs the ASGI lifespan on every invocation, so nothing here hangs off the lifespan:
the store lives at module level and survives between invocations of a warm container.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlcore.errors import ArtifactError

logger = logging.getLogger("serving.model")


def load_predictor(path: Path, *, threads: int | None = None):
    """An ONNX export runs on onnxruntime (no torch in the process); a .pt artifact needs torch."""
    if path.suffix == ".onnx":
        from mlcore.onnx_predictor import OnnxPredictor

        return OnnxPredictor.from_file(path, threads=threads)
    import torch

    from mlcore.predictor import Predictor

    if threads:
        torch.set_num_threads(threads)
    return Predictor.from_file(path)


class ModelUnavailable(Exception):
    """No model can answer: the message says why (missing, corrupt, unreachable)."""


@dataclass(frozen=True)
class LoadedModel:
    predictor: Any  # OnnxPredictor or Predictor: the same predict() and version
    marker: str  # what the source looked like when loaded (mtime+size, or the S3 ETag)
    loaded_at: float


class ModelStore:
    def __init__(self, uri: str, *, refresh_seconds: float, threads: int | None = None, loader: Callable[..., Any] = load_predictor) -> None:
        self.uri = uri
        self.threads = threads
        self.refresh_seconds = refresh_seconds
        self._loader = loader
        self._lock = threading.Lock()
        self._current: LoadedModel | None = None
        self._last_check = 0.0
        self.error: str | None = None
        self.loads = 0  # how many artifacts this process has loaded (the tests count them)

    # -- the source: a local file or an S3 object ------------------------------------------------
    def _marker(self) -> str:
        if self.uri.startswith("s3://"):
            bucket, key = _split_s3(self.uri)
            try:
                head = _s3().head_object(Bucket=bucket, Key=key)
            except Exception as exc:  # botocore raises many kinds; all mean "not reachable now"
                raise ModelUnavailable(f"the model at {self.uri} cannot be reached: {_short(exc)}") from None
            return head["ETag"]
        try:
            stat = os.stat(self.uri)
        except OSError:
            raise ModelUnavailable(f"no model file at {self.uri}") from None
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    def _fetch_and_load(self, marker: str) -> LoadedModel:
        if not self.uri.startswith("s3://"):
            return LoadedModel(self._load(Path(self.uri)), marker, time.time())
        bucket, key = _split_s3(self.uri)
        with tempfile.TemporaryDirectory(prefix="model-") as folder:  # /tmp on Lambda
            local = Path(folder) / Path(key).name
            try:
                _s3().download_file(bucket, key, str(local))
            except Exception as exc:
                raise ModelUnavailable(f"the model at {self.uri} cannot be downloaded: {_short(exc)}") from None
            return LoadedModel(self._load(local), marker, time.time())

    def _load(self, path: Path) -> Any:
        try:
            predictor = self._loader(path, threads=self.threads)
        except ArtifactError as exc:
            raise ModelUnavailable(f"the model at {self.uri} cannot be loaded: {exc}") from None
        self.loads += 1
        return predictor

    # -- what requests use -------------------------------------------------------------------------
    def get(self) -> LoadedModel:
        """The current model, loading it if there is none and checking for a newer one when due."""
        current = self._current
        if current is not None and time.monotonic() - self._last_check < self.refresh_seconds:
            return current
        with self._lock:
            current = self._current
            if current is not None and time.monotonic() - self._last_check < self.refresh_seconds:
                return current
            self._last_check = time.monotonic()
            try:
                marker = self._marker()
                if current is not None and marker == current.marker:
                    return current
                loaded = self._fetch_and_load(marker)
            except ModelUnavailable as exc:
                self.error = str(exc)
                if current is None:
                    raise
                # Keep serving the model we have; the new one is retried at the next check.
                logger.error('{"event": "model_refresh_failed", "reason": %r}', self.error)
                return current
            self._current, self.error = loaded, None
            if current is not None:
                logger.info('{"event": "model_swapped", "from": "%s", "to": "%s"}', current.predictor.version, loaded.predictor.version)
            return loaded

    def try_preload(self) -> None:
        try:
            self.get()
        except ModelUnavailable as exc:
            logger.error('{"event": "model_preload_failed", "reason": %r}', str(exc))

    @property
    def current(self) -> LoadedModel | None:
        return self._current


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise ModelUnavailable(f"{uri} is not of the form s3://bucket/key")
    return bucket, key


_client = None


def _s3():
    """One boto3 client per container (AWS_ENDPOINT_URL_S3 points it at an S3-compatible server)."""
    global _client
    if _client is None:
        import boto3

        _client = boto3.client("s3")
    return _client


def _short(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
