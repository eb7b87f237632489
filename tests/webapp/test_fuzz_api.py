"""Fuzzing the Django API from its own OpenAPI schema (schemathesis): whatever a client sends,
the answer is never a 5xx, and its status code, content type and body are the ones the schema
declares. The WSGI app is called in-process, inside the test's database transaction.

Bounded: at most EXAMPLES generated requests per operation, a couple of minutes in all.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from webapp.training.models import TrainingRun
from tests.webapp_fixtures import api_client_for

EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _load_schema():
    # Read from the app itself (no database needed); schemathesis.pytest.from_fixture would load it
    # lazily, but its pytest integration does not run under pytest 9.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        return schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


schema = _load_schema()


@pytest.fixture
def in_test_transaction(db):
    """As Django's test client does: a request must not close the connection that holds the
    test's transaction when it starts or ends."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def tokens(labeled_workspace, ml_engineer, reporter) -> dict[str, str]:
    """An ML engineer's token (every right of the API), and the serving app's for review items."""

    def token(user) -> str:
        return api_client_for(user)._credentials["HTTP_AUTHORIZATION"]

    return {"engineer": token(ml_engineer), "reporter": token(reporter)}


@pytest.fixture
def no_run_left_queued(db):
    """Launches the fuzzer makes are cancelled afterwards: none may stay queued behind the test."""
    from webapp.training import services as training

    yield
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED):
        training.training_run_cancel(run=run)
    assert not TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED).exists()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_the_api_answers_what_its_schema_declares(case, in_test_transaction, tokens, no_run_left_queued):
    who = "reporter" if case.path == "/api/v1/review-items/" else "engineer"
    case.call_and_validate(headers={"Authorization": tokens[who]}, checks=CHECKS)
