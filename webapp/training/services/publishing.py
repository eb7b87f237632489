"""Where serving's files live and how they are written: each version's pair under versions/, the
switch of the live pair and its restore, over a local folder or S3."""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from django.conf import settings
from django.core.exceptions import ValidationError

from mlcore.files import atomic_write, is_s3_uri, parse_s3_uri
from webapp.training.models import TrainingRun
from webapp.training.services.launch import first_line

logger = logging.getLogger(__name__)

class ServingFiles:
    """Where a model's two files live: the live pair serving reads (SERVING_MODEL_URI and the
    .onnx beside it), or one version's pair under versions/<version>/ beside them."""

    def __init__(self, pt: str, onnx: str) -> None:
        self.pt, self.onnx = pt, onnx

    @classmethod
    def live(cls, uri: str) -> "ServingFiles":
        from mlcore.onnx_export import onnx_uri_for

        return cls(uri, onnx_uri_for(uri))

    @classmethod
    def for_version(cls, uri: str, version: str) -> "ServingFiles":
        live = cls.live(uri)
        folder = f"versions/{version}"
        return cls(_sibling(live.pt, f"{folder}/{_basename(live.pt)}"), _sibling(live.onnx, f"{folder}/{_basename(live.onnx)}"))

    @property
    def folder(self) -> str:
        return self.pt.rsplit("/", 1)[0]


def _basename(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def _sibling(uri: str, relative: str) -> str:
    return f"{uri.rsplit('/', 1)[0]}/{relative}" if "/" in uri else relative


def publish_version(version: ServingFiles, *, artifact: Path, onnx: Path) -> None:
    """Step 3: this version's files under their own names; serving reads none of them."""
    publish_artifact(source=artifact, uri=version.pt)
    publish_artifact(source=onnx, uri=version.onnx)


def previous_version(current: TrainingRun | None, live: ServingFiles) -> ServingFiles | None:
    """The files to restore if the switch fails: the current version's copy. Models promoted
    before versioned copies existed get theirs now, from what serving holds."""
    if current is None:
        return None
    previous = ServingFiles.for_version(live.pt, current.version)
    if not (storage_exists(previous.pt) and storage_exists(previous.onnx)) and storage_exists(live.pt) and storage_exists(live.onnx):
        storage_copy(live.pt, previous.pt)
        storage_copy(live.onnx, previous.onnx)
    return previous if storage_exists(previous.onnx) else None


def switch_live(version: ServingFiles, live: ServingFiles) -> None:
    storage_copy(version.pt, live.pt)
    storage_copy(version.onnx, live.onnx)


def restore_live(previous: ServingFiles | None, live: ServingFiles) -> None:
    """Serving back to the previous version; with none before, back to no model at all."""
    try:
        if previous is not None:
            switch_live(previous, live)
        else:
            storage_delete(live.onnx)
            storage_delete(live.pt)
    except Exception:
        logger.exception("could not restore the serving files after a failed promotion; serving may hold an unrecorded model")


# -- the store serving reads: a local folder, or S3 ------------------------------------------------


def _split_s3(uri: str) -> tuple[str, str]:
    try:
        return parse_s3_uri(uri)
    except ValueError as exc:
        raise ValidationError({"serving_uri": f"{exc}."}) from None


def _s3():
    import boto3
    from botocore.config import Config

    # Bounded: a slow or unreachable S3 fails the promotion with a reason instead of hanging it.
    config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("s3", endpoint_url=settings.AWS_S3_ENDPOINT_URL, config=config)


@contextmanager
def _storage_errors(action: str, uri: str) -> Iterator[None]:
    try:
        yield
    except ValidationError:
        raise
    except Exception as exc:  # botocore's errors, OSError (disk full, permissions)
        raise ValidationError({"serving_uri": f"Could not {action} {uri}: {first_line(exc)}"}) from exc


def publish_artifact(*, source: Path, uri: str) -> None:
    """Replace what ``uri`` holds in one step: readers see the old file or the new, never a mix."""
    with _storage_errors("write", uri):
        if is_s3_uri(uri):
            bucket, key = _split_s3(uri)
            _s3().upload_file(str(source), bucket, key)  # S3 swaps the object when the upload completes
            return
        with source.open("rb") as reader:
            _atomic_write(Path(uri), reader)


def _atomic_write(target: Path, reader) -> None:
    atomic_write(target, lambda handle: shutil.copyfileobj(reader, handle, 1 << 20))


def storage_copy(source_uri: str, target_uri: str) -> None:
    """Copy one published file to another name, atomically for readers of the target."""
    with _storage_errors("copy to", target_uri):
        if is_s3_uri(target_uri):
            source_bucket, source_key = _split_s3(source_uri)
            bucket, key = _split_s3(target_uri)
            _s3().copy({"Bucket": source_bucket, "Key": source_key}, bucket, key)
            return
        with Path(source_uri).open("rb") as reader:
            _atomic_write(Path(target_uri), reader)


def storage_exists(uri: str) -> bool:
    with _storage_errors("read", uri):
        if is_s3_uri(uri):
            from botocore.exceptions import ClientError

            bucket, key = _split_s3(uri)
            try:
                _s3().head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True
        return Path(uri).exists()


def storage_delete(uri: str) -> None:
    with _storage_errors("delete", uri):
        if is_s3_uri(uri):
            bucket, key = _split_s3(uri)
            _s3().delete_object(Bucket=bucket, Key=key)
            return
        Path(uri).unlink(missing_ok=True)
