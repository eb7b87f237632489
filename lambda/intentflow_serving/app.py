"""The serving app: FastAPI on AWS Lambda through Mangum, or locally under uvicorn.

The model is loaded at import (``PRELOAD_MODEL``, on by default): on Lambda the init phase runs
before the first request with the function's full CPU, and a SnapStart snapshot then holds the
loaded model. If it cannot be loaded then, the first request tries again, and so does every
request after it until a model loads (answering 503 with the reason meanwhile).
"""

# No `from __future__ import annotations`: FastAPI must see the request models (made by ServingCore) as classes.
import inspect
import logging
import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from mangum import Mangum
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from intentflow_serving.config import ServingSettings
from intentflow_serving.core import ServingCore
from intentflow_serving.model import ModelStore, ModelUnavailable
from intentflow_serving.review import ReviewRouter, build_router

# On Lambda the runtime has set up the root logger already; under uvicorn or a test this adds one.
logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.getLogger().setLevel(logging.INFO)
logging.getLogger("mangum").setLevel(logging.WARNING)  # our one JSON line per request says more


class IntentProbability(BaseModel):
    intent: str
    probability: float


class Classification(BaseModel):
    intent: str
    confidence: float = Field(description="The calibrated probability of the intent.")
    distribution: list[IntentProbability]
    low_confidence: bool = Field(description="The rule's figure is under the threshold: the prediction was sent to review.")
    in_scope_score: float | None = Field(description=(
        "How in scope the text looks, in [0, 1]: the share of the model's in-scope validation texts that looked less so "
        "(its logits and its distance to the nearest intent's examples). Null for a model without it."))
    rule: Literal["in_scope_score", "confidence"] = Field(description="Which figure the threshold applies to.")
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
    rule: Literal["in_scope_score", "confidence"] = Field(description="Which figure decides low confidence.")
    threshold: float = Field(description="The threshold the rule applies (an override, or the model's own).")
    recommended_threshold: float = Field(description="The model's own threshold for the rule.")
    temperature: float
    base_model: str | None
    created_at: str | None
    dataset_fingerprint: str | None
    metrics: dict[str, Any]
    precision: str = Field(description="The served weights: int8 (passed its accuracy gate at promotion) or fp32.")
    backend: str = Field(description="onnx (what promotion publishes) or torch (a .pt file, for development).")


def create_app(settings: ServingSettings, store: ModelStore, router: ReviewRouter | None = None, *,
               core: ServingCore | None = None) -> FastAPI:
    """The FastAPI app: every route, the OpenAPI schema and the error answers. Every request,
    on Lambda (through Mangum) and under uvicorn alike, is answered by these routes."""
    core = core or ServingCore(settings, store, router or build_router(settings))
    router = core.router
    ClassifyRequest, BatchRequest = core.ClassifyRequest, core.BatchRequest
    api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="One of the keys in API_KEYS.")

    async def require_api_key(x_api_key: Annotated[str | None, Security(api_key_header)] = None) -> None:
        if not core.authorized(x_api_key):
            raise HTTPException(status_code=401, detail="a valid x-api-key header is required")

    def model():
        try:
            return store.get()
        except ModelUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"no model is available: {exc}") from None

    def json_response(content: dict) -> Response:
        """orjson: a 150-intent distribution serialises several times faster than with json."""
        return Response(orjson.dumps(content), media_type="application/json")

    app = FastAPI(title="intentflow serving", version="1", **no_telemetry(FastAPI))
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

    # The response models document the API (OpenAPI); the handlers return ready JSON responses.
    # `async def` runs the model on the event loop's thread: a plain `def` would hop to a thread
    # pool and back for every request, which costs more than the model call itself. Lambda sends
    # one request at a time to a container; under uvicorn, run one worker process per core.
    @app.post("/classify", response_model=Classification, dependencies=guarded, responses={**refused, **bad_input, **no_model})
    async def classify(body: ClassifyRequest, request: Request) -> Response:
        return Response(core.classify_one(model().predictor, body.text, time.perf_counter(), request.scope), media_type="application/json")

    @app.post("/classify/batch", response_model=BatchClassification, dependencies=guarded, responses={**refused, **bad_input, **no_model})
    async def classify_batch(body: BatchRequest, request: Request) -> JSONResponse:
        started_at = time.perf_counter()
        results = core.classify_texts(model().predictor, body.texts)
        core.log_request(results, body.texts, started_at, request.scope)
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
            "uptime_seconds": round(time.monotonic() - core.started, 3),
            "error": store.error,
            "review": {"sink": settings.review_sink, "delivered": router.delivered, "undelivered": router.undelivered},
        }
        return JSONResponse(status_code=200 if loaded else 503, content=body)

    @app.get("/model", response_model=ModelInfo, dependencies=guarded, responses={**refused, **no_model})
    async def model_info() -> Response:
        predictor = model().predictor
        info = describe(predictor)
        rule, threshold = core.rule(predictor)
        return json_response({
            "model_version": predictor.version,
            "intents": predictor.labels,
            "rule": rule,
            "threshold": threshold,
            "recommended_threshold": predictor.own_threshold(rule),
            "temperature": predictor.temperature,
            **info,
        })

    app.state.router = router
    return app


def no_telemetry(fastapi_class) -> dict:
    """FastAPI releases with built-in OpenTelemetry wrap every request in it; the one JSON log line
    per request is this app's telemetry, so that layer is turned off where it exists."""
    if "telemetry" in inspect.signature(fastapi_class.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    return {}


HEADLINE = ("examples", "accuracy", "macro_f1", "ece", "rule", "in_scope_review_rate", "oos_recall", "oos_auroc")


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
logging.getLogger().setLevel(settings.log_level)
store = ModelStore(settings.model_uri, refresh_seconds=settings.model_refresh_seconds, threads=settings.inference_threads,
                   load_wait_seconds=settings.model_load_wait_seconds)
if settings.preload_model:
    store.try_preload()
# Built at import, as the model is loaded: on Lambda the init phase pays for both. `app` is what
# uvicorn serves, `handler` what Lambda calls. lifespan="off": Mangum would otherwise run the ASGI
# lifespan on every invocation; the model lives in the module-level store instead.
app = create_app(settings, store, build_router(settings))
handler = Mangum(app, lifespan="off")
