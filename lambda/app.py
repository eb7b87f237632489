"""The serving app: FastAPI on AWS Lambda through Mangum, or locally under uvicorn.

The model is loaded at import (``PRELOAD_MODEL``, on by default): on Lambda the init phase runs
before the first request with the function's full CPU, and a SnapStart snapshot then holds the
loaded model. If it cannot be loaded then, the first request tries again, and so does every
request after it until a model loads (answering 503 with the reason meanwhile).
"""

# No `from __future__ import annotations`: FastAPI must see the request models, defined in create_app, as classes.
import hmac
import inspect
import json
import logging
import re
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
import orjson
from mangum import Mangum
from pydantic import BaseModel, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlcore.prediction import ranked_distribution
from serving_config import ServingSettings
from serving_fast_path import FastPath, header, is_json
from serving_model import ModelStore, ModelUnavailable
from serving_review import ReviewRouter, build_router

# On Lambda the runtime has set up the root logger already; under uvicorn or a test this adds one.
logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.getLogger().setLevel(logging.INFO)
logging.getLogger("mangum").setLevel(logging.WARNING)  # our one JSON line per request says more
logger = logging.getLogger("serving.request")


class IntentProbability(BaseModel):
    intent: str
    probability: float


class Classification(BaseModel):
    intent: str
    confidence: float
    distribution: list[IntentProbability]
    low_confidence: bool
    threshold: float
    model_version: str
    prediction_id: str


class BatchClassification(BaseModel):
    results: list[Classification]


class Problem(BaseModel):
    """A refused request (401) or no model to answer with (503)."""

    detail: str


class InputError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class InputProblem(BaseModel):
    """A body that is not a valid request: ``detail`` names each problem in one sentence."""

    detail: str
    errors: list[InputError]


class ReviewCounts(BaseModel):
    sink: str
    delivered: int
    undelivered: int


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model_loaded: bool
    model_version: str | None
    uptime_seconds: float
    error: str | None
    review: ReviewCounts


class ModelInfo(BaseModel):
    model_version: str
    intents: list[str]
    threshold: float
    recommended_threshold: float
    temperature: float
    base_model: str | None
    created_at: str | None
    dataset_fingerprint: str | None
    metrics: dict[str, Any]
    precision: str = Field(description="The served weights: int8 (passed its accuracy gate at promotion) or fp32.")
    backend: str = Field(description="onnx (what promotion publishes) or torch (a .pt file, for development).")


# What a text must hold besides whitespace: something other than control characters (NUL, ESC, DEL...),
# which the tokenizer drops. Python's re and JSON Schema's (ECMA-262) regexes read this class alike, but
# for a few rare spaces (ECMA's \s also holds U+FEFF).
PRINTABLE = r"[^\s\x00-\x1f\x7f-\x9f]"
NOTHING_BUT_CONTROLS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]*")
# A str decoded from JSON holds a surrogate code point only if the JSON escaped an unpaired one
# ("\ud800"): not Unicode text, and the tokenizer cannot take it.
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def create_app(settings: ServingSettings, store: ModelStore, router: ReviewRouter | None = None, *, fast_path: bool | None = None) -> FastAPI:
    started = time.monotonic()
    fast_path = settings.fast_path if fast_path is None else fast_path
    router = router or build_router(settings)
    max_chars, max_batch = settings.max_text_chars, settings.max_batch_size

    def check_text(text: str) -> str:
        """The one text check of both routes and the fast path."""
        if not text.strip():
            raise ValueError("text must not be empty or whitespace only")
        if len(text) > max_chars:
            raise ValueError(f"text has {len(text)} characters; at most {max_chars} are allowed")
        if NOTHING_BUT_CONTROLS.fullmatch(text):
            raise ValueError("text holds nothing but control characters and whitespace")
        if surrogate := LONE_SURROGATE.search(text):
            raise ValueError(f"text is not valid Unicode: a lone surrogate (U+{ord(surrogate.group()):04X}) at character {surrogate.start()}")
        return text

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

    def authorized(supplied: str | None) -> bool:
        """The one authorization rule of the routes and the fast path: with API_KEYS set, the
        x-api-key header must hold one of them (compared with every key in constant time, so
        timing reveals nothing about them)."""
        if not settings.api_keys:
            return True
        matches = [hmac.compare_digest((supplied or "").encode(), key.encode()) for key in settings.api_keys]
        return any(matches)

    api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="One of the keys in API_KEYS.")

    async def require_api_key(x_api_key: Annotated[str | None, Security(api_key_header)] = None) -> None:
        if not authorized(x_api_key):
            raise HTTPException(status_code=401, detail="a valid x-api-key header is required")

    def model():
        try:
            return store.get()
        except ModelUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"no model is available: {exc}") from None

    app = FastAPI(title="intentflow serving", version="1", **NO_TELEMETRY)
    # Without keys the check is left out of the route entirely: nothing to solve per request.
    guarded = [Security(require_api_key)] if settings.api_keys else []
    # The error answers each route can give, declared in the OpenAPI schema.
    refused = {401: {"model": Problem, "description": "x-api-key is missing or not one of API_KEYS."}} if settings.api_keys else {}
    no_model = {503: {"model": Problem, "description": "No model is loaded; `detail` says why."}}
    bad_input = {422: {"model": InputProblem, "description": "Not a valid request; `detail` names each problem."}}

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in error['loc'] if p != 'body') or 'body'}: {error['msg'].removeprefix('Value error, ')}"
                    for error in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems), "errors": jsonable(exc.errors())})

    @app.exception_handler(StarletteHTTPException)  # what FastAPI's body parsing raises
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):  # FastAPI's vague 400 for a JSON body that cannot be decoded
            problem = f"cannot be decoded as {cause.encoding}: {cause.reason} at byte {cause.start}"
            return JSONResponse(status_code=422, content={"detail": f"body: {problem}", "errors": [{"loc": ["body"], "msg": problem, "type": "json_invalid"}]})
        return await http_exception_handler(request, exc)

    def classify_texts(texts: list[str]) -> list[dict]:
        """Plain dicts, serialised once: building and re-validating a pydantic model per intent
        of every answer would cost more than the model call on the serving path."""
        predictor = model().predictor
        threshold = settings.confidence_threshold if settings.confidence_threshold is not None else predictor.threshold
        results, review = [], []
        for text, row in zip(texts, predictor.probabilities(texts)):
            distribution = ranked_distribution(row, predictor.labels)
            confidence = distribution[0]["probability"]
            result = {
                "intent": distribution[0]["intent"], "confidence": confidence, "distribution": distribution,
                "low_confidence": confidence < threshold, "threshold": threshold, "model_version": predictor.version,
                "prediction_id": str(uuid.uuid4()),
            }
            results.append(result)
            second = distribution[1]["probability"] if len(distribution) > 1 else 0.0
            reason = router.review_reason(confidence=confidence, second=second, threshold=threshold, model_version=predictor.version)
            if reason is not None:
                review.append(router.event(prediction_id=result["prediction_id"], text=text, distribution=distribution,
                                           model_version=predictor.version, threshold=threshold, reason=reason))
        router.submit(review)  # bounded by REVIEW_TIMEOUT_MS; never raises
        return results

    cold = {"start": True}  # the first request this process answers pays the cold start

    def log_request(results: list[dict], texts: list[str], started_at: float, scope: dict) -> None:
        cold_start, cold["start"] = cold["start"], False
        if not logger.isEnabledFor(logging.INFO):
            return
        record = {
            "event": "classify", "request_id": request_id(scope), "cold_start": cold_start,
            "latency_ms": round((time.perf_counter() - started_at) * 1000, 2),
            "model_version": results[0]["model_version"] if results else None,
            "predictions": [
                {"prediction_id": r["prediction_id"], "intent": r["intent"], "confidence": round(r["confidence"], 6),
                 "low_confidence": r["low_confidence"], **({"text": t} if settings.log_text else {})}
                for r, t in zip(results, texts)
            ],
        }
        logger.info(json.dumps(record))

    def classify_one(text: str, started_at: float, scope: dict) -> bytes:
        results = classify_texts([text])
        log_request(results, [text], started_at, scope)
        return orjson.dumps(results[0])

    # The response models document the API (OpenAPI); the handlers return ready JSON responses.
    # `async def` runs the model on the event loop's thread: a plain `def` would hop to a thread
    # pool and back for every request, which costs more than the model call itself. Lambda sends
    # one request at a time to a container; under uvicorn, run one worker process per core.
    @app.post("/classify", response_model=Classification, dependencies=guarded, responses={**refused, **bad_input, **no_model})
    async def classify(body: ClassifyRequest, request: Request) -> Response:
        return Response(classify_one(body.text, time.perf_counter(), request.scope), media_type="application/json")

    def answer_classify(body: bytes, scope: dict) -> bytes | None:
        """POST /classify on the fast path; None leaves the request to the route above, which
        answers the same way or with the error (401, 422, 503) that FastAPI would give."""
        started_at = time.perf_counter()
        headers = scope["headers"]
        # Decoded as Starlette decodes headers, so both paths accept exactly the same keys.
        supplied = header(headers, b"x-api-key")
        if not authorized(None if supplied is None else supplied.decode("latin-1")):
            return None
        if store.current is None or not is_json(header(headers, b"content-type")):
            return None  # with no model loaded yet, the route tries to load it, or says why not
        try:
            text = ClassifyRequest.model_validate_json(body).text
        except ValidationError:
            return None
        return classify_one(text, started_at, scope)

    if fast_path:
        app.add_middleware(FastPath, path="/classify", answer=answer_classify)

    @app.post("/classify/batch", response_model=BatchClassification, dependencies=guarded, responses={**refused, **bad_input, **no_model})
    async def classify_batch(body: BatchRequest, request: Request) -> JSONResponse:
        started_at = time.perf_counter()
        results = classify_texts(body.texts)
        log_request(results, body.texts, started_at, request.scope)
        return json_response({"results": results})

    @app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "No model is loaded; `error` says why."}})
    async def health() -> JSONResponse:
        try:
            loaded = store.get()
        except ModelUnavailable:
            loaded = None
        body = {
            "status": "ok" if loaded else "unavailable",
            "model_loaded": loaded is not None,
            "model_version": loaded.predictor.version if loaded else None,
            "uptime_seconds": round(time.monotonic() - started, 3),
            "error": store.error,
            "review": {"sink": settings.review_sink, "delivered": router.delivered, "undelivered": router.undelivered},
        }
        return JSONResponse(status_code=200 if loaded else 503, content=body)

    @app.get("/model", response_model=ModelInfo, dependencies=guarded, responses={**refused, **no_model})
    async def model_info() -> Response:
        predictor = model().predictor
        info = describe(predictor)
        return json_response({
            "model_version": predictor.version,
            "intents": predictor.labels,
            "threshold": settings.confidence_threshold if settings.confidence_threshold is not None else predictor.threshold,
            "recommended_threshold": predictor.threshold,
            "temperature": predictor.temperature,
            **info,
        })

    app.state.router = router
    return app


# FastAPI releases with built-in OpenTelemetry wrap every request in it; the one JSON log line per
# request is this app's telemetry, so that layer is turned off where it exists.
NO_TELEMETRY = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {}
)


def request_id(scope: dict) -> str | None:
    """Lambda's request id (Mangum puts the invocation's context in the scope), or a caller's x-request-id."""
    context = scope.get("aws.context")
    if context is not None and getattr(context, "aws_request_id", None):
        return context.aws_request_id
    supplied = header(scope.get("headers", []), b"x-request-id")
    return supplied.decode("latin-1")[:200] if supplied else None


def json_response(content: dict) -> Response:
    """orjson: a 150-intent distribution serialises several times faster than with json."""
    return Response(orjson.dumps(content), media_type="application/json")


HEADLINE = ("examples", "accuracy", "macro_f1", "ece", "oos_recall", "oos_auroc")


def describe(predictor) -> dict:
    """Provenance and headline metrics, from an ONNX export's metadata or a .pt artifact."""
    source = getattr(predictor, "metadata", None) or getattr(predictor, "artifact", {})
    metrics = source.get("metrics", {})
    report = metrics.get("test") or metrics.get("validation") or metrics
    return {
        "base_model": source.get("base_model"), "created_at": source.get("created_at"),
        "dataset_fingerprint": source.get("dataset_fingerprint"), "metrics": {k: report.get(k) for k in HEADLINE},
        "precision": source.get("precision", "fp32"), "backend": predictor.backend,
    }


def jsonable(errors: list[dict]) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


settings = ServingSettings()
store = ModelStore(settings.model_uri, refresh_seconds=settings.model_refresh_seconds, threads=settings.inference_threads,
                   load_wait_seconds=settings.model_load_wait_seconds)
if settings.preload_model:
    store.try_preload()
app = create_app(settings, store)
handler = Mangum(app, lifespan="off")
