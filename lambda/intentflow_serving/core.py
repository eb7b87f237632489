"""What answering a classify request needs besides HTTP: the text rule, the request models,
authorization, the model call, review routing and the log line.

The FastAPI routes (intentflow_serving.app) are built on this; they are the one request path, on Lambda
(through Mangum) and under uvicorn alike.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from typing import Annotated, Sequence

import orjson
from pydantic import BaseModel, Field, field_validator

from mlcore.prediction import is_low_confidence, ranked_distribution
from intentflow_serving.config import ServingSettings
from intentflow_serving.model import ModelStore
from intentflow_serving.review import SAMPLE, ReviewRouter

logger = logging.getLogger("serving.request")

# What a text must hold besides whitespace: something other than control characters (NUL, ESC, DEL...),
# which the tokenizer drops. Python's re and JSON Schema's (ECMA-262) regexes read this class alike, but
# for a few rare spaces (ECMA's \s also holds U+FEFF).
PRINTABLE = r"[^\s\x00-\x1f\x7f-\x9f]"
NOTHING_BUT_CONTROLS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]*")
# A str decoded from JSON holds a surrogate code point only if the JSON escaped an unpaired one
# ("\ud800"): not Unicode text, and the tokenizer cannot take it.
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


class ServingCore:
    def __init__(self, settings: ServingSettings, store: ModelStore, router: ReviewRouter) -> None:
        self.settings, self.store, self.router = settings, store, router
        self.started = time.monotonic()
        self.cold_start = True  # the first request this process answers pays the cold start
        self.ClassifyRequest, self.BatchRequest = self._request_models()

    def check_text(self, text: str) -> str:
        """The one text check of both classify routes."""
        max_chars = self.settings.max_text_chars
        if not text.strip():
            raise ValueError("text must not be empty or whitespace only")
        if len(text) > max_chars:
            raise ValueError(f"text has {len(text)} characters; at most {max_chars} are allowed")
        if NOTHING_BUT_CONTROLS.fullmatch(text):
            raise ValueError("text holds nothing but control characters and whitespace")
        if surrogate := LONE_SURROGATE.search(text):
            raise ValueError(f"text is not valid Unicode: a lone surrogate (U+{ord(surrogate.group()):04X}) at character {surrogate.start()}")
        return text

    def _request_models(self):
        check_text, max_chars, max_batch = self.check_text, self.settings.max_text_chars, self.settings.max_batch_size
        # The limits are checked by check_text, with its messages; the schema states them (json_schema_extra).
        text_limits = {"minLength": 1, "maxLength": max_chars, "pattern": PRINTABLE}
        Text = Annotated[str, Field(json_schema_extra=text_limits)]

        class ClassifyRequest(BaseModel):
            text: Annotated[Text, Field(description=f"The utterance, 1 to {max_chars} characters, not blank.")]

            _check = field_validator("text")(lambda cls, value: check_text(value))

        class BatchRequest(BaseModel):
            texts: Annotated[list[Text], Field(description=f"1 to {max_batch} utterances.", json_schema_extra={"minItems": 1, "maxItems": max_batch})]

            @field_validator("texts")
            @classmethod
            def check_texts(cls, texts: list[str]) -> list[str]:
                if not texts:
                    raise ValueError("texts must hold at least one text")
                if len(texts) > max_batch:
                    raise ValueError(f"texts holds {len(texts)} items; at most {max_batch} are allowed per request")
                for index, text in enumerate(texts):
                    try:
                        check_text(text)
                    except ValueError as exc:
                        raise ValueError(f"texts[{index}]: {exc}") from None
                return texts

        return ClassifyRequest, BatchRequest

    def authorized(self, supplied: str | None) -> bool:
        """The one authorization rule of the routes: with API_KEYS set, the x-api-key header
        must hold one of them (compared with every key in constant time, so timing reveals
        nothing about them)."""
        if not self.settings.api_keys:
            return True
        matches = [hmac.compare_digest((supplied or "").encode(), key.encode()) for key in self.settings.api_keys]
        return any(matches)

    def rule(self, predictor) -> tuple[str, float]:
        """What sends a prediction to review, and under which threshold: the model's in-scope score
        (IN_SCOPE_THRESHOLD overrides its threshold) unless CONFIDENCE_THRESHOLD imposes the
        calibrated probability; a model without the score always uses the probability."""
        rule, threshold = predictor.rule(self.settings.confidence_threshold)
        if rule == "in_scope_score" and self.settings.in_scope_threshold is not None:
            threshold = self.settings.in_scope_threshold
        return rule, threshold

    def classify_texts(self, predictor, texts: list[str]) -> list[dict]:
        """Plain dicts, serialised once: building and re-validating a pydantic model per intent
        of every answer would cost more than the model call on the serving path."""
        (rule, threshold), router = self.rule(predictor), self.router
        # REVIEW_ROUTING=either: a model served by its in-scope score also sends what its probability
        # calls unsure, so the queue holds the confusions that teach the next run the most.
        also_below = predictor.threshold if rule == "in_scope_score" and self.settings.review_routing == "either" else None
        probabilities, scores = predictor.answer(texts)
        shares = [None] * len(texts) if scores is None else scores.tolist()
        results, review = [], []
        for text, row, share in zip(texts, probabilities, shares):
            distribution = ranked_distribution(row, predictor.labels)
            confidence = distribution[0]["probability"]
            low_confidence = is_low_confidence(rule=rule, confidence=confidence, in_scope_score=share, threshold=threshold)
            result = {
                "intent": distribution[0]["intent"], "confidence": confidence, "distribution": distribution,
                "low_confidence": low_confidence, "in_scope_score": share, "rule": rule, "threshold": threshold,
                "model_version": predictor.version, "prediction_id": str(uuid.uuid4()),
            }
            results.append(result)
            second = distribution[1]["probability"] if len(distribution) > 1 else 0.0
            reason = router.review_reason(low_confidence=low_confidence, confidence=confidence, second=second, model_version=predictor.version,
                                          probability_threshold=also_below)
            if reason == SAMPLE:
                review.append(router.sample_event(prediction_id=result["prediction_id"], text=text, intent=result["intent"],
                                                  model_version=predictor.version))
            elif reason is not None:
                review.append(router.event(prediction_id=result["prediction_id"], text=text, distribution=distribution,
                                           model_version=predictor.version, threshold=threshold, reason=reason, rule=rule,
                                           in_scope_score=share))
        router.submit(review)  # bounded by REVIEW_TIMEOUT_MS; never raises
        return results

    def log_request(self, results: list[dict], texts: list[str], started_at: float, scope: dict) -> None:
        cold_start, self.cold_start = self.cold_start, False
        if not logger.isEnabledFor(logging.INFO):
            return
        record = {
            "event": "classify", "request_id": request_id(scope), "cold_start": cold_start,
            "latency_ms": round((time.perf_counter() - started_at) * 1000, 2),
            "model_version": results[0]["model_version"] if results else None,
            "predictions": [
                {"prediction_id": r["prediction_id"], "intent": r["intent"], "confidence": round(r["confidence"], 6),
                 "low_confidence": r["low_confidence"], **({"text": t} if self.settings.log_text else {})}
                for r, t in zip(results, texts)
            ],
        }
        logger.info(json.dumps(record))

    def classify_one(self, predictor, text: str, started_at: float, scope: dict) -> bytes:
        results = self.classify_texts(predictor, [text])
        self.log_request(results, [text], started_at, scope)
        return orjson.dumps(results[0])


def request_id(scope: dict) -> str | None:
    """Lambda's request id (Mangum puts the invocation's context in the scope), or a caller's x-request-id."""
    context = scope.get("aws.context")
    if context is not None and getattr(context, "aws_request_id", None):
        return context.aws_request_id
    supplied = header(scope.get("headers", []), b"x-request-id")
    return supplied.decode("latin-1")[:200] if supplied else None


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """One request header (ASGI gives names lower-cased)."""
    for key, value in headers:
        if key == name:
            return value
    return None
