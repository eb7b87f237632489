"""A serving handler built the usual way: transformers loads the model, pipeline() answers.

Same FastAPI + Mangum shape as intentflow_serving.app, for the cold-start and latency comparison of
bench/serving.py (BENCHMARKS.md, section 4), which imports it as ``bench.baseline_app`` in fresh
processes. Not a script: it loads its model when imported, from BASELINE_MODEL_DIR (a directory
written by bench/hf_baseline.py) or BASELINE_MODEL_S3.
"""

import os
from pathlib import Path

from fastapi import FastAPI
from mangum import Mangum
from pydantic import BaseModel

from bench.hf_baseline import load_pipeline


def model_directory() -> str:
    """BASELINE_MODEL_DIR, or the files under BASELINE_MODEL_S3 (s3://bucket/prefix/) fetched to /tmp
    first, as a Lambda function would fetch them at cold start."""
    if "BASELINE_MODEL_S3" not in os.environ:
        return os.environ["BASELINE_MODEL_DIR"]
    import tempfile

    import boto3

    bucket, _, prefix = os.environ["BASELINE_MODEL_S3"][len("s3://"):].partition("/")
    s3, target = boto3.client("s3"), Path(tempfile.mkdtemp(prefix="baseline-model-"))
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        s3.download_file(bucket, item["Key"], str(target / Path(item["Key"]).name))
    return str(target)


classifier = load_pipeline(model_directory())
app = FastAPI()


class Request(BaseModel):
    text: str


@app.post("/classify")
def classify(body: Request) -> dict:
    scores = classifier(body.text)
    ranked = scores[0] if scores and isinstance(scores[0], list) else scores
    return {"intent": ranked[0]["label"], "confidence": ranked[0]["score"], "distribution": ranked}


handler = Mangum(app, lifespan="off")
