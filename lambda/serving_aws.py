"""AWS clients for serving (S3 for the model, SQS for review events), made with botocore alone.

Not boto3: nothing of it is used here, and importing it (with s3transfer) cost 60 to 90 ms of every
cold start (BENCHMARKS.md, section 4). One botocore session per process, as boto3's default session
would be: it parses the service descriptions once, so a client made later (a new endpoint, a new
queue) costs little, and never holds the interpreter long while requests are being answered.
"""

from __future__ import annotations

import threading
from typing import Any

_session = None
_lock = threading.Lock()


def aws_client(service: str, **config: Any):
    """A botocore client for ``service`` (AWS_ENDPOINT_URL_<SERVICE> points it elsewhere), with
    these botocore ``Config`` options."""
    global _session
    import botocore.session
    from botocore.config import Config

    with _lock:  # botocore sessions are not safe to share while being made
        if _session is None:
            _session = botocore.session.get_session()
        return _session.create_client(service, config=Config(**config))
