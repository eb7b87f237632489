"""The warm-container model cache: one predictor per process, loaded once, swapped atomically.

Mangum runs the ASGI lifespan on every invocation, so nothing here hangs off the lifespan:
the store lives at module level and survives between invocations of a warm container.

Loading and refreshing run in one background thread at a time, so a slow or failing source
(an S3 HEAD that hangs, a download that crawls, a corrupt file) never holds a request while a
model is loaded: the loaded model keeps answering and the outcome shows in ``error`` (and so in
/health). Only the very first load makes requests wait, for at most ``load_wait_seconds``; then
they answer 503 with the reason while the load goes on. On Lambda the thread is frozen with the
container between invocations: a check that request N started continues at the next thaw.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlcore.errors import ArtifactError
from mlcore.files import is_s3_uri, parse_s3_uri

logger = logging.getLogger("serving.model")

# S3 calls run off the request path; these only keep a hung call from blocking the next check for long.
S3_CONNECT_TIMEOUT_SECONDS = 2
S3_READ_TIMEOUT_SECONDS = 5
# Tries of one S3 call, the first included, when S3 fails in a way that passes (no answer, a 5xx, a
# download cut short). The pause before a retry doubles from this, with jitter, up to 2 s.
S3_MAX_ATTEMPTS = 3
S3_BACKOFF_SECONDS = 0.25


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


class ModelRejected(ModelUnavailable):
    """The source was read but is not a usable model: fetching the same version again cannot help."""


@dataclass(frozen=True)
class LoadedModel:
    predictor: Any  # OnnxPredictor or Predictor: the same predict() and version
    marker: str  # what the source looked like when loaded (mtime+size, or the S3 ETag)
    loaded_at: float


class ModelStore:
    def __init__(self, uri: str, *, refresh_seconds: float, threads: int | None = None,
                 loader: Callable[..., Any] = load_predictor, load_wait_seconds: float = 10.0) -> None:
        self.uri = uri
        self.threads = threads
        self.refresh_seconds = refresh_seconds
        self.load_wait_seconds = load_wait_seconds
        self._loader = loader
        self._lock = threading.Lock()  # guards starting the one background check
        self._worker: threading.Thread | None = None
        self._current: LoadedModel | None = None
        self._rejected_marker: str | None = None  # a version that failed to load: not fetched again
        self._last_check = 0.0
        self.error: str | None = None
        self.loads = 0  # how many artifacts this process has loaded (the tests count them)

    # -- what requests use -------------------------------------------------------------------------
    def get(self) -> LoadedModel:
        """The current model (starting a check for a newer one when due, without waiting for it),
        or, with none loaded yet, the first one, waited for at most ``load_wait_seconds``."""
        current = self._current
        if current is not None:
            if time.monotonic() - self._last_check >= self.refresh_seconds:
                self._start_check()
            return current
        worker = self._start_check()
        worker.join(self.load_wait_seconds)
        if self._current is not None:
            return self._current
        if worker.is_alive():
            self.error = f"the model at {self.uri} is still loading after {self.load_wait_seconds:g} s (a slow or unreachable source)"
        raise ModelUnavailable(self.error or f"the model at {self.uri} could not be loaded")

    def try_preload(self) -> None:
        try:
            self.get()
        except ModelUnavailable as exc:
            log(logging.ERROR, "model_preload_failed", uri=self.uri, reason=str(exc))

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    # -- the background check ----------------------------------------------------------------------
    def _start_check(self) -> threading.Thread:
        """The running check, or a new one: never two at once, so a hung source holds one thread."""
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._last_check = time.monotonic()
                self._worker = threading.Thread(target=self._check, name="model-refresh", daemon=True)
                self._worker.start()
            return self._worker

    def _check(self) -> None:
        current = self._current
        marker = None
        try:
            marker = self._marker()
            if current is not None and marker == current.marker:
                self.error = None  # the source holds the model we serve (again)
                return
            if marker == self._rejected_marker:
                return  # this very version failed to load already; its error stands until a new one
            loaded = self._fetch_and_load(marker)
        except Exception as exc:  # anything: an exception in this thread would otherwise vanish unseen
            self.error = str(exc) if isinstance(exc, ModelUnavailable) else f"the model at {self.uri} failed to load: {type(exc).__name__}: {_short(exc)}"
            if isinstance(exc, ModelRejected):
                self._rejected_marker = marker
            # With a model loaded it keeps answering; the source is checked again when due.
            log(logging.ERROR, "model_refresh_failed" if current is not None else "model_load_failed", uri=self.uri, reason=self.error)
            return
        self._current, self.error = loaded, None
        log(logging.INFO, "model_swapped" if current is not None else "model_loaded", uri=self.uri,
            **({"from": current.predictor.version} if current is not None else {}), to=loaded.predictor.version)

    # -- the source: a local file or an S3 object ------------------------------------------------
    def _marker(self) -> str:
        if is_s3_uri(self.uri):
            bucket, key = _split_s3(self.uri)
            try:
                return _s3_etag(bucket, key)
            except Exception as exc:  # botocore raises many kinds; all mean "not reachable now"
                raise ModelUnavailable(f"the model at {self.uri} cannot be reached: {_short(exc)}") from None
        try:
            stat = os.stat(self.uri)
        except OSError:
            raise ModelUnavailable(f"no model file at {self.uri}") from None
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    def _fetch_and_load(self, marker: str) -> LoadedModel:
        if not is_s3_uri(self.uri):
            return LoadedModel(self._load(Path(self.uri)), marker, time.time())
        bucket, key = _split_s3(self.uri)
        with tempfile.TemporaryDirectory(prefix="model-") as folder:  # /tmp on Lambda
            local = Path(folder) / Path(key).name
            try:
                _s3_download(bucket, key, local)
            except Exception as exc:  # not ModelRejected: a read that failed says nothing of the version
                raise ModelUnavailable(f"the model at {self.uri} cannot be downloaded: {_short(exc)}") from None
            return LoadedModel(self._load(local), marker, time.time())

    def _load(self, path: Path) -> Any:
        try:
            predictor = self._loader(path, threads=self.threads)
        except ArtifactError as exc:
            raise ModelRejected(f"the model at {self.uri} cannot be loaded: {exc}") from None
        self.loads += 1
        return predictor


def log(level: int, event: str, **fields: Any) -> None:
    """One JSON line: built with json.dumps, so any reason text stays valid JSON."""
    logger.log(level, json.dumps({"event": event, **fields}))


def _split_s3(uri: str) -> tuple[str, str]:
    try:
        return parse_s3_uri(uri)
    except ValueError as exc:
        raise ModelUnavailable(str(exc)) from None


_client = None
CHUNK_BYTES = 1 << 20


def _s3_etag(bucket: str, key: str) -> str:
    """The object's ETag: a HEAD signed here with the environment's credentials (as on Lambda),
    else through botocore (intentflow_serving.aws says why)."""
    from intentflow_serving.aws import environment_credentials, s3_etag

    credentials = environment_credentials()
    if credentials is None:
        return _s3().head_object(Bucket=bucket, Key=key)["ETag"]
    return s3_etag(bucket, key, credentials=credentials, **_s3_limits())


def _s3_download(bucket: str, key: str, destination: Path) -> None:
    """The whole object at ``destination``, read as _s3_etag reads its ETag: one GET streamed to
    /tmp (s3transfer's download_file adds a HEAD and threads), fetched again when the answer ends
    early. A file cut short must never reach the loader: refused as corrupt, its version would not
    be fetched again until the next promotion."""
    from intentflow_serving.aws import environment_credentials, s3_download

    credentials = environment_credentials()
    if credentials is None:
        _botocore_download(bucket, key, destination)
    else:
        s3_download(bucket, key, destination, credentials=credentials, **_s3_limits())


def _botocore_download(bucket: str, key: str, destination: Path) -> None:
    """botocore retries the GET up to its answer, not the body it then hands over: an answer that
    breaks off (its StreamingBody checks Content-Length and raises) is fetched again here."""
    from botocore.exceptions import BotoCoreError

    from intentflow_serving.aws import S3Error, retrying

    def download() -> None:
        body = _s3().get_object(Bucket=bucket, Key=key)["Body"]
        try:
            with destination.open("wb") as handle:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    handle.write(chunk)
        except BotoCoreError as exc:  # cut short, reset, or a read timeout, while reading the body
            raise S3Error(f"GET s3://{bucket}/{key} failed while reading: {_short(exc)}", transient=True) from None
        finally:
            body.close()

    retrying(download, attempts=S3_MAX_ATTEMPTS, backoff_seconds=S3_BACKOFF_SECONDS)


def _s3_limits() -> dict:
    # Read when called: tests shorten the timeouts.
    return {"connect_timeout": S3_CONNECT_TIMEOUT_SECONDS, "read_timeout": S3_READ_TIMEOUT_SECONDS, "attempts": S3_MAX_ATTEMPTS,
            "backoff_seconds": S3_BACKOFF_SECONDS}


def _s3():
    """One S3 client per container (AWS_ENDPOINT_URL_S3 points it at an S3-compatible server)."""
    global _client
    if _client is None:
        from intentflow_serving.aws import aws_client

        _client = aws_client("s3", connect_timeout=S3_CONNECT_TIMEOUT_SECONDS, read_timeout=S3_READ_TIMEOUT_SECONDS,
                             retries={"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"})
    return _client


def _short(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
