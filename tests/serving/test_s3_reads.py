"""Reading the model from S3 through what S3 and networks do now and then: a connection closed
before the whole object came, a 5xx, a redirect to the bucket's region. A read that failed is
retried, and never taken for a corrupt model: a version refused as corrupt is not fetched again
until the next promotion, so a cold container would answer 503 until then.

S3 is a real local HTTP server here (tests/serving/servers.FakeS3), read both ways serving reads
it: signed by intentflow_serving.aws (credentials in the environment, as on Lambda) and through botocore.
"""

import pytest

from mlcore.artifact import file_sha256
from tests.aws_fixtures import FAKE_CREDENTIALS
from tests.serving.conftest import point_s3_at, served_version
from tests.serving.servers import FakeS3, cut_short, redirect_to, s3_error, signing_region

MODEL_URI = "s3://models/production/model.onnx"
OBJECT_PATH = "/models/production/model.onnx"  # path style: where serving addresses it on an endpoint URL
TEXT = "show me the news"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fake_s3(start_server, monkeypatch, tiny_onnx):
    """Start a FakeS3 holding the tiny model (or ``content``) and point serving's S3 reads at it."""

    def start(content: bytes | None = None, **options) -> FakeS3:
        s3 = FakeS3(tiny_onnx.read_bytes() if content is None else content, **options)
        point_s3_at(start_server(s3), monkeypatch)
        return s3

    monkeypatch.delenv("AWS_REGION", raising=False)
    return start


@pytest.fixture
def environment_credentials(monkeypatch):
    """Credentials in the environment, as Lambda gives them: serving signs its S3 reads itself."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def profile_credentials(monkeypatch, tmp_path):
    """Credentials in a profile only: serving reads S3 through botocore."""
    import intentflow_serving.aws

    profile = tmp_path / "credentials"
    profile.write_text("[serving]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile))
    monkeypatch.setenv("AWS_PROFILE", "serving")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(intentflow_serving.aws, "_session", None)  # a fresh session reads the profile, as a new container's would


@pytest.fixture
def version(tiny_artifact) -> str:
    return file_sha256(tiny_artifact)[:12]


def max_attempts() -> int:
    import intentflow_serving.model

    return intentflow_serving.model.S3_MAX_ATTEMPTS


@pytest.mark.parametrize("credentials", ["environment_credentials", "profile_credentials"])
def test_a_download_cut_short_is_fetched_again_and_the_model_loads(fake_s3, make_client, version, request, credentials):
    request.getfixturevalue(credentials)
    s3 = fake_s3(failing_gets=[cut_short])
    client = make_client(model_uri=MODEL_URI)
    assert served_version(client) == version
    assert len(s3.gets) == 2


@pytest.mark.parametrize("credentials", ["environment_credentials", "profile_credentials"])
def test_downloads_cut_short_every_time_leave_the_version_to_be_fetched_again(fake_s3, make_client, version, request, credentials):
    """Not one whole read: the request says why, and once S3 answers whole again the same version
    (the same ETag) loads: it was never taken for a corrupt model."""
    request.getfixturevalue(credentials)
    s3 = fake_s3(failing_gets=[cut_short] * max_attempts())
    client = make_client(model_uri=MODEL_URI)
    refused = client.post("/classify", json={"text": TEXT})
    assert refused.status_code == 503 and "cannot be downloaded" in refused.json()["detail"], refused.text
    assert len(s3.gets) == max_attempts() and not s3.failing_gets
    assert served_version(client) == version


def test_a_cut_short_download_says_how_many_bytes_came(fake_s3, make_client, environment_credentials):
    s3 = fake_s3(failing_gets=[cut_short] * max_attempts())
    detail = make_client(model_uri=MODEL_URI).post("/classify", json={"text": TEXT}).json()["detail"]
    assert f"cut short: {len(s3.content) // 2} of {len(s3.content)} bytes" in detail


@pytest.mark.parametrize("failure", [s3_error(500, "InternalError"), s3_error(503, "SlowDown")], ids=["500", "503"])
def test_a_5xx_is_retried_and_the_model_loads(fake_s3, make_client, version, environment_credentials, failure):
    s3 = fake_s3(failing_gets=[failure])
    assert served_version(make_client(model_uri=MODEL_URI)) == version
    assert len(s3.gets) == 2


def test_a_whole_object_that_is_no_model_is_not_fetched_again(fake_s3, make_client, environment_credentials):
    """The one case for refusing a version until the next promotion: read whole, then refused by the loader."""
    s3 = fake_s3(b"\x00garbage, not an ONNX model" * 100)
    client = make_client(model_uri=MODEL_URI)
    for _ in range(3):
        response = client.post("/classify", json={"text": TEXT})
        assert response.status_code == 503 and "cannot be loaded" in response.json()["detail"]
    assert len(s3.gets) == 1


def test_a_bucket_in_another_region_is_read_there(fake_s3, make_client, version, environment_credentials):
    """S3 answers a request signed for the wrong region with 301 and the bucket's region: the
    request is signed again for that region, as botocore does."""
    s3 = fake_s3(region="eu-west-1")
    assert served_version(make_client(model_uri=MODEL_URI)) == version
    assert [(r.method, signing_region(r)) for r in s3.requests] == [
        ("HEAD", "us-east-1"), ("HEAD", "eu-west-1"), ("GET", "us-east-1"), ("GET", "eu-west-1")]


def test_a_temporary_redirect_is_followed_to_its_location(fake_s3, make_client, version, environment_credentials):
    s3 = fake_s3(failing_gets=[redirect_to("/elsewhere/production/model.onnx")])
    assert served_version(make_client(model_uri=MODEL_URI)) == version
    assert [r.target for r in s3.gets] == [OBJECT_PATH, "/elsewhere/production/model.onnx"]


def test_a_redirect_to_another_host_is_not_followed(fake_s3, make_client, version, environment_credentials, start_server, tiny_onnx):
    """A signed request goes to S3's hosts or to the endpoint set, never to whatever host an answer names."""
    elsewhere = FakeS3(tiny_onnx.read_bytes())
    s3 = fake_s3(failing_gets=[redirect_to(start_server(elsewhere) + OBJECT_PATH)])
    client = make_client(model_uri=MODEL_URI)
    refused = client.post("/classify", json={"text": TEXT})
    assert refused.status_code == 503 and "307" in refused.json()["detail"], refused.text
    assert elsewhere.requests == [] and len(s3.gets) == 1
    assert served_version(client) == version  # not refused as corrupt either: the next check reads it
