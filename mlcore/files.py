"""Writing a file so that readers never see half of it, and reading ``s3://bucket/key`` URIs: the one
place for each, used by the artifact writer, the ONNX export, promotion and serving (standard
library only, so the serving package can carry it)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

S3_SCHEME = "s3://"


def is_s3_uri(uri: str) -> bool:
    return uri.startswith(S3_SCHEME)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key); ValueError with the reason for anything else."""
    if not is_s3_uri(uri):
        raise ValueError(f"{uri} is not an s3:// URI")
    bucket, _, key = uri[len(S3_SCHEME):].partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri} is not of the form s3://bucket/key")
    return bucket, key


def atomic_write(target: str | Path, fill: Callable[[IO[bytes]], None]) -> Path:
    """Write ``target`` through ``fill(handle)`` into a temporary file beside it, flushed to disk, then
    renamed over it: readers see the old file or the new one, never a mix, and a failure (a full
    disk, an exception in ``fill``) leaves the old file as it was. Errors propagate unchanged."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes it owner-only; readers (the serving process) need it
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target
