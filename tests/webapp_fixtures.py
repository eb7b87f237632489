"""Fixtures for the Django side (users per role, factories, a labeled workspace), shared by webapp and e2e tests."""

from __future__ import annotations

import itertools

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from webapp.labeling import services
from webapp.labeling.models import Intent, Utterance
from webapp.labeling.roles import LABELERS, ML_ENGINEERS

_names = itertools.count()


def make_user(role: str | None, *, superuser: bool = False) -> User:
    name = f"{(role or 'plain').split()[0].lower()}{next(_names)}"
    user = User.objects.create_user(name, password="pw-for-tests-123", is_staff=True, is_superuser=superuser)
    if role:
        if not Group.objects.filter(name=role).exists():  # a transactional test flushed the migration's groups
            from django.apps import apps

            from webapp.labeling.roles import sync_role_permissions

            sync_role_permissions(apps)
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def labeler(db) -> User:
    return make_user(LABELERS)


@pytest.fixture
def ml_engineer(db) -> User:
    return make_user(ML_ENGINEERS)


@pytest.fixture
def plain_user(db) -> User:
    return make_user(None)


@pytest.fixture
def intent_factory(db):
    def make(name: str, **kwargs) -> Intent:
        return services.intent_create(name=name, **kwargs)

    return make


@pytest.fixture
def utterance_factory(db):
    def make(text: str, intent: Intent | None = None, *, user: User | None = None, source=Utterance.Source.MANUAL) -> Utterance:
        return services.utterance_create(text=text, intent=intent, source=source, user=user)

    return make


def api_client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def api_for():
    return api_client_for


@pytest.fixture
def labeled_workspace(db, ml_engineer):
    """The demo data set imported, with three utterances of every intent held out for evaluation."""
    from tests.factories import DEMO_DATA

    services.utterances_import(path=DEMO_DATA, user=ml_engineer)
    for intent in Intent.objects.all():
        held = Utterance.objects.filter(intent=intent).order_by("id")[:3]
        services.utterances_set_held_out(utterances=Utterance.objects.filter(pk__in=[u.pk for u in held]), held_out=True, user=ml_engineer)
    return Intent.objects.all()


@pytest.fixture
def tiny_options(tiny_base_model) -> dict:
    return {"base_model": tiny_base_model, "epochs": 3, "learning_rate": 1e-3, "batch_size": 16}


@pytest.fixture
def serving_path(settings, tmp_path):
    settings.SERVING_MODEL_URI = str(tmp_path / "serving" / "model.pt")
    return tmp_path / "serving" / "model.pt"


@pytest.fixture
def reporter(db) -> User:
    """The serving app's service account: it may only post review items."""
    from webapp.labeling.roles import REVIEW_REPORTERS

    return make_user(REVIEW_REPORTERS)


def review_event(text: str = "what is the meaning of life", *, top: float = 0.41, intent: str = "get_news", **overrides) -> dict:
    """An event as the serving app sends it."""
    import uuid as _uuid

    # The rest of the probability spread over other intents, each below ``top``.
    others = [name for name in ("play_music", "get_weather", "get_news", "set_reminder", "book_meeting", "get_profile") if name != intent]
    share = min(top * 0.9, (1 - top) / len(others))
    rest = [{"intent": name, "probability": share} for name in others]
    rest[-1]["probability"] = 1 - top - share * (len(others) - 1)
    event = {
        "prediction_id": str(_uuid.uuid4()), "text": text,
        "distribution": [{"intent": intent, "probability": top}, *rest],
        "model_version": "abc123def456", "threshold": 0.7, "time": "2026-11-26T10:00:00.000+00:00",
    }
    event.update(overrides)
    return event


def traffic_sample(**overrides) -> dict:
    """A traffic sample as the serving app sends it: a confident answer, unlabeled."""
    import uuid as _uuid

    sample = {"type": "sample", "prediction_id": str(_uuid.uuid4()), "text": "play some jazz please", "intent": "play_music",
              "model_version": "abc123def456", "time": "2026-12-01T10:00:00.000+00:00"}
    sample.update(overrides)
    return sample


@pytest.fixture
def queued(labeled_workspace, ml_engineer, tiny_options, django_capture_on_commit_callbacks):
    """Launch a run; the on-commit enqueue is captured (the worker-free tests execute it directly)."""
    from webapp.training import services as training
    from webapp.training.models import TrainingRun

    def launch(**overrides) -> TrainingRun:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            run = training.training_run_start(user=ml_engineer, options={**tiny_options, **overrides})
        # Queued with transaction.on_commit, exactly once (a transactional test commits, and so queues, at once).
        assert len(callbacks) == 1 or (not callbacks and run.task_id)
        return run

    return launch


@pytest.fixture
def trained(queued):
    """A run trained to its end in this process (as the worker's task would)."""
    from webapp.training import services as training
    from webapp.training.models import TrainingRun

    def train(**overrides) -> TrainingRun:
        run = queued(**overrides)
        training.training_run_execute(run_id=run.pk)
        run.refresh_from_db()
        assert run.status == TrainingRun.Status.SUCCEEDED, run.error_message
        return run

    return train
