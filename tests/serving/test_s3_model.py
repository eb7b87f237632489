"""MODEL_URI=s3://... against a local S3-compatible server (moto in server mode)."""

from datetime import datetime, timezone

import pytest

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


SIGNED_REQUESTS = [
    ("GET", "https://models.s3.eu-west-1.amazonaws.com/production/model.onnx", None),
    ("HEAD", "https://models.s3.eu-west-1.amazonaws.com/production/model.onnx", "session-token/with+slash=="),
    ("GET", "http://127.0.0.1:5000/models/a%20key/with%2Bplus/%C3%BCmlaut~tilde.onnx", "token"),
    ("GET", "https://s3.eu-west-1.amazonaws.com/my.dotted.bucket/model.onnx", None),
]


@pytest.mark.parametrize("method, url, token", SIGNED_REQUESTS)
def test_requests_are_signed_exactly_as_botocore_signs_them(method, url, token, monkeypatch):
    """The cold start signs its S3 reads itself (intentflow_serving.aws); S3 accepts them only if the signature
    is what botocore's S3 signer computes for the same request."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from intentflow_serving.aws import sigv4_headers

    now = datetime(2026, 11, 30, 12, 34, 56, tzinfo=timezone.utc)
    ours = sigv4_headers(method, url, ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "eu-west-1", now)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    request = AWSRequest(method=method, url=url, headers={"host": ours["host"]})
    botocore.auth.S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "s3", "eu-west-1").add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert (ours["x-amz-date"], ours["x-amz-content-sha256"]) == (request.headers["X-Amz-Date"], request.headers["X-Amz-Content-SHA256"])


def test_objects_are_addressed_where_botocore_sends_them():
    from intentflow_serving.aws import s3_url

    assert s3_url("models", "a key/m.onnx", {"AWS_REGION": "eu-west-1"}) == "https://models.s3.eu-west-1.amazonaws.com/a%20key/m.onnx"
    assert s3_url("my.models", "m.onnx", {"AWS_REGION": "eu-west-1"}) == "https://s3.eu-west-1.amazonaws.com/my.models/m.onnx"
    assert s3_url("models", "m.onnx", {}) == "https://models.s3.us-east-1.amazonaws.com/m.onnx"
    assert s3_url("models", "m.onnx", {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9/"}) == "http://127.0.0.1:9/models/m.onnx"


def test_without_credentials_in_the_environment_botocore_reads_the_model(bucket, make_client, tiny_artifact, tiny_onnx, tmp_path, monkeypatch):
    """A profile (or SSO, or instance metadata) is botocore's to resolve: the model still loads."""
    bucket.upload_file(str(tiny_onnx), "models", KEY)
    profile = tmp_path / "credentials"
    profile.write_text("[serving]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile))
    monkeypatch.setenv("AWS_PROFILE", "serving")
    import intentflow_serving.aws

    monkeypatch.setattr(intentflow_serving.aws, "_session", None)  # a fresh botocore session reads the profile, as a new container's would
    client = make_client(model_uri=f"s3://models/{KEY}")
    assert served_version(client) == file_sha256(tiny_artifact)[:12]
    import intentflow_serving.model

    assert intentflow_serving.model._client is not None  # botocore's client did it


def test_a_missing_object_is_named_with_s3s_answer(bucket, make_client):
    client = make_client(model_uri="s3://models/missing/model.onnx")
    detail = client.post("/classify", json={"text": "hi"}).json()["detail"]
    assert "cannot be reached: HEAD" in detail and "answered 404" in detail
