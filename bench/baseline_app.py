"""A serving handler built the usual way: transformers loads the model, pipeline() answers.

Same FastAPI + Mangum shape as lambda/app.py, for the cold-start and latency comparison.
Reads BASELINE_MODEL_DIR (a directory written by bench/hf_baseline.py).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI  # noqa: E402
from mangum import Mangum  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from bench.hf_baseline import load_pipeline  # noqa: E402

classifier = load_pipeline(os.environ["BASELINE_MODEL_DIR"])
app = FastAPI()


class Request(BaseModel):
    text: str


@app.post("/classify")
def classify(body: Request) -> dict:
    scores = classifier(body.text)
    ranked = scores[0] if scores and isinstance(scores[0], list) else scores
    return {"intent": ranked[0]["label"], "confidence": ranked[0]["score"], "distribution": ranked}


handler = Mangum(app, lifespan="off")
