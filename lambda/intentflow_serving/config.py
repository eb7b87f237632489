"""The serving app's settings: read from the environment once, refused at start-up when wrong.

A pydantic model fed from the environment (each field from the variable of its name, upper or
lower case; keyword arguments win), not pydantic-settings' BaseSettings: importing that cost 57 ms
of every cold start (BENCHMARKS.md, section 4) for what these few lines do.
"""

from __future__ import annotations

import os
from typing import Literal, Mapping
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ServingSettings(BaseModel):
    # Field names such as model_uri are the variables' names: "model_" is not a namespace here.
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    def __init__(self, **values) -> None:
        environment = {name.lower(): value for name, value in os.environ.items()}
        found = {name: environment[name] for name in type(self).model_fields if name in environment}
        super().__init__(**{**found, **values})

    # A local path or s3://bucket/key: the ONNX export "Promote to production" publishes (model.onnx),
    # or a .pt artifact (served with torch, for development).
    model_uri: str = Field(default="var/serving/model.onnx", min_length=1)
    # Imposes the calibrated-probability rule with this threshold (the original design used 0.7),
    # even for a model with an in-scope score.
    confidence_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # Overrides the threshold of a model's in-scope score: the share of in-scope traffic sent to review.
    in_scope_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # How often to check whether the promoted model changed (a stat, or an S3 HEAD); 0 checks on every request.
    model_refresh_seconds: float = Field(default=60.0, ge=0.0)
    # How long a request waits for the first model load before answering 503 (the load goes on in
    # the background). Once a model is loaded, refreshes never make a request wait.
    model_load_wait_seconds: float = Field(default=10.0, gt=0.0, le=600.0)
    # When set, requests need an x-api-key header holding one of these (comma-separated).
    api_keys: list[str] = Field(default_factory=list)
    max_text_chars: int = Field(default=1000, ge=1, le=100_000)
    max_batch_size: int = Field(default=64, ge=1, le=10_000)
    log_text: bool = False
    # onnxruntime's (or torch's) intra-op threads. By default the cores shared out among the server's
    # processes: on Lambda one process, so all the vCPUs it gives (in proportion to memory); under
    # uvicorn --workers N (WEB_CONCURRENCY=N) the cores over N. One process per core with one thread
    # each served twice the requests of one process with every core (BENCHMARKS.md, section 4).
    inference_threads: int = Field(default_factory=lambda: default_inference_threads(os.environ), ge=1, le=256)
    # The level of the serving logs (the one JSON line per request is INFO; WARNING turns it off).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Load the model at import, so Lambda's init phase (and a SnapStart snapshot) pays for it.
    preload_model: bool = True

    # Where unsure predictions go for review: nowhere, the Django API, or an SQS queue.
    review_sink: Literal["none", "http", "sqs"] = "none"
    review_api_url: str = ""  # e.g. https://admin.example.com/api/v1/review-items/ (the final slash is added if missing)
    review_api_token: str = ""  # a token of a "Review reporters" user: it can only post review items
    review_queue_url: str = ""
    # The most a classify response may wait for the sink, retries included.
    review_timeout_ms: int = Field(default=200, ge=1, le=10_000)
    review_retries: int = Field(default=2, ge=0, le=10)
    # What sends a prediction to the review queue besides the audit draw. "either": the serving rule
    # (low_confidence), or, for a model with an in-scope score, a calibrated probability under the
    # model's own probability threshold too; the score catches what looks out of scope, the
    # probability what the model confuses, and the queue's labels teach it most (BENCHMARKS.md,
    # section 11). "rule": low_confidence alone (the routing of issue 15).
    review_routing: Literal["either", "rule"] = "either"
    # Also review predictions whose first and second intents are closer than this (off by default).
    ambiguity_margin: float | None = Field(default=None, ge=0.0, le=1.0)
    # The share of all predictions sent to the queue as "audit" items, whatever their confidence:
    # reviewers' decisions on them estimate the production model's accuracy (the admin's index).
    review_audit_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    # The share of the predictions *not* sent to review (answered with confidence) sent to Django
    # as unlabeled traffic samples: training runs self-train on them (mlcore.self_training), which
    # closed most of the gap to a full-data model on CLINC150 (BENCHMARKS.md, section 11). 0: none.
    traffic_sample_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    # How often each container reports its prediction counts (the admin's Traffic page), in seconds.
    traffic_report_seconds: float = Field(default=60.0, ge=0.0, le=86_400.0)
    # Where the http sink posts traffic reports; by default REVIEW_API_URL's sibling, .../traffic-reports/.
    traffic_api_url: str = ""

    @model_validator(mode="after")
    def sink_is_complete(self):
        if self.review_sink == "http" and not (self.review_api_url and self.review_api_token):
            raise ValueError("REVIEW_SINK=http needs REVIEW_API_URL and REVIEW_API_TOKEN")
        if self.review_sink == "http" and not self.review_api_url.startswith(("http://", "https://")):
            raise ValueError(f"REVIEW_API_URL must be an http:// or https:// URL, got {self.review_api_url!r}")
        if self.traffic_api_url and not self.traffic_api_url.startswith(("http://", "https://")):
            raise ValueError(f"TRAFFIC_API_URL must be an http:// or https:// URL, got {self.traffic_api_url!r}")
        if self.review_sink == "sqs" and not self.review_queue_url:
            raise ValueError("REVIEW_SINK=sqs needs REVIEW_QUEUE_URL")
        return self

    @field_validator("review_api_url", "traffic_api_url")
    @classmethod
    def ends_in_a_slash(cls, url: str) -> str:
        """Django's API routes end in a slash, and the review sink follows no redirect (APPEND_SLASH
        answers a POST without the slash with one): a URL given without it gets it here."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.path.endswith("/"):
            return url  # not an http(s) URL: sink_is_complete says so
        return urlunsplit(parts._replace(path=parts.path + "/"))

    @field_validator("log_level", mode="before")
    @classmethod
    def upper_case_level(cls, value):
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def split_keys(cls, value):
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value


def default_inference_threads(environment: Mapping[str, str]) -> int:
    """The CPU count over the number of server processes: uvicorn starts WEB_CONCURRENCY workers
    (its default for --workers), each with its own model and thread pool. More threads than cores
    in all would only make them wait for each other."""
    workers = environment.get("WEB_CONCURRENCY", "1")
    if not workers.isdigit() or int(workers) < 1:
        raise ValueError(f"WEB_CONCURRENCY must be a whole number of processes, at least 1, got {workers!r}")
    return max(1, (os.cpu_count() or 1) // int(workers))
