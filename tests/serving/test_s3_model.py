"""MODEL_URI=s3://... against a local S3-compatible server (moto in server mode)."""

from mlcore.artifact import file_sha256
from tests.serving.conftest import eventually, health_error, served_version, variant_of

KEY = "production/model.onnx"


def test_the_model_loads_from_s3_and_is_swapped_when_a_newer_one_is_promoted(bucket, make_client, tiny_artifact, tiny_onnx, tmp_path):
    bucket.upload_file(str(tiny_onnx), "models", KEY)
    client = make_client(model_uri=f"s3://models/{KEY}")
    first = client.post("/classify", json={"text": "show me the news"})
    assert first.status_code == 200 and first.json()["model_version"] == file_sha256(tiny_artifact)[:12]
    newer = tmp_path / "newer.onnx"
    version = variant_of(tiny_artifact, newer, temperature=3.0)
    bucket.upload_file(str(newer), "models", KEY)
    eventually(lambda: served_version(client) == version, what="the swap to the newer model")
    # A corrupt object: keep serving the model we have, and say so in /health.
    bucket.put_object(Bucket="models", Key=KEY, Body=b"not a model")
    eventually(lambda: "cannot be loaded" in health_error(client), what="the corrupt object's error in /health")
    assert served_version(client) == version
    assert client.store.loads == 2


def test_an_unreachable_object_is_503_with_the_reason(bucket, make_client):
    client = make_client(model_uri="s3://models/missing/model.pt")
    response = client.post("/classify", json={"text": "hi"})
    assert response.status_code == 503 and "cannot be reached" in response.json()["detail"]


def test_the_int8_model_is_served_from_s3(bucket, make_client, tiny_artifact, tiny_onnx, tmp_path):
    from mlcore.quantize import quantize_int8

    int8 = quantize_int8(tiny_onnx, tmp_path / "model.int8.onnx")
    bucket.upload_file(str(int8), "models", KEY)
    client = make_client(model_uri=f"s3://models/{KEY}")
    answer = client.post("/classify", json={"text": "show me the news"})
    assert answer.status_code == 200 and answer.json()["model_version"] == file_sha256(tiny_artifact)[:12]
    assert client.get("/model").json()["precision"] == "int8"
    assert bucket.head_object(Bucket="models", Key=KEY)["ContentLength"] < 0.5 * tiny_onnx.stat().st_size
