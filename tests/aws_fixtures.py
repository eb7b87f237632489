"""A local S3/SQS endpoint for the tests: moto in server mode, as a separate process on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server():
    """The endpoint URL of a moto server that lives for the whole test session."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def aws(moto_server, monkeypatch):
    """Fake credentials in the environment and a boto3 session pointed at moto."""
    import boto3

    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return lambda service: boto3.client(service, endpoint_url=moto_server, region_name="us-east-1")


@pytest.fixture
def review_queue(aws, moto_server, settings):
    """An SQS queue with a dead-letter queue after ``max_receives`` receives, wired into the settings."""

    def make(name: str, *, max_receives: int = 5, visibility: int = 30) -> tuple:
        sqs = aws("sqs")
        dead = sqs.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
        dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(max_receives)}),
        })["QueueUrl"]
        settings.REVIEW_QUEUE_URL, settings.AWS_SQS_ENDPOINT_URL = url, moto_server
        return sqs, url, dead

    return make
