"""Real processes: a django-q2 worker (qcluster) on the test database, with either broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tests.factories import REPO_ROOT

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def database_url() -> str:
    """The URL of the database this test session uses (the test database, not the configured one)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{settings.get('HOST') or '127.0.0.1'}:{settings.get('PORT') or 5432}/{settings['NAME']}"


@pytest.fixture(params=["orm", "redis"])
def broker(request, monkeypatch):
    """The broker both this process (which enqueues) and the worker use; each test gets its own queue."""
    from django_q.conf import Conf

    name = f"intentflow-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(Conf, "PREFIX", name)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", name)
    env = {"Q_CLUSTER_NAME": name}
    if request.param == "redis":
        import redis

        try:
            redis.from_url(REDIS_URL).ping()
        except redis.exceptions.ConnectionError:
            pytest.fail(f"the Redis server at {REDIS_URL} is not running")
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
        env["REDIS_URL"] = REDIS_URL
    return request.param, env


@pytest.fixture
def qcluster(transactional_db, broker, tmp_path):
    """Start `manage.py qcluster` as a separate process and stop it at the end of the test."""
    _, broker_env = broker
    log = tmp_path / "qcluster.log"
    env = {
        **os.environ, **broker_env,
        "DJANGO_SETTINGS_MODULE": "webapp.settings", "DEBUG": "1", "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=REPO_ROOT, env=env,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    yield Worker(process, log)
    if process.poll() is None:
        # The worker's own graceful stop waits for its pollers; the test has nothing left for it to do.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Worker:
    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.process, self.log = process, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition, *, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited ({self.process.returncode}) while waiting for {what}:\n{self.output()[-3000:]}")
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; worker log:\n{self.output()[-3000:]}")
