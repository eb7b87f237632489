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
    env = {"Q_CLUSTER_PREFIX": name}
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
    """Start the two `manage.py qcluster` processes (training runs; the short jobs) and stop them at the end."""
    _, broker_env = broker
    prefix = broker_env["Q_CLUSTER_PREFIX"]
    env = {
        **os.environ, **broker_env,
        "DJANGO_SETTINGS_MODULE": "webapp.settings", "DEBUG": "1", "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
    }
    processes, logs = [], []
    for cluster in (f"{prefix}-training", prefix):
        log = tmp_path / f"qcluster-{cluster}.log"
        with log.open("w") as output:
            processes.append(subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=REPO_ROOT, env={**env, "Q_CLUSTER_NAME": cluster},
                                              stdout=output, stderr=subprocess.STDOUT, start_new_session=True))
        logs.append(log)
    yield Worker(processes[0], logs[0], others=processes[1:], other_logs=logs[1:])
    for process in processes:
        if process.poll() is None:
            # The worker's own graceful stop waits for its pollers; the test has nothing left for it to do.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Worker:
    """The training cluster's process (``process``), and the short jobs' cluster beside it."""

    def __init__(self, process: subprocess.Popen, log: Path, *, others=(), other_logs=()) -> None:
        self.process, self.log = process, log
        self.others, self.other_logs = list(others), list(other_logs)

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in [self.log, *self.other_logs])

    def wait_for(self, condition, *, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            for process in [self.process, *self.others]:
                if process.poll() is not None:
                    pytest.fail(f"a worker exited ({process.returncode}) while waiting for {what}:\n{self.output()[-3000:]}")
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; worker log:\n{self.output()[-3000:]}")
