"""The launch page, the run page, the API and who may do what."""

import pytest

from webapp.training import services
from webapp.training.services import launch
from webapp.training.models import TrainingRun

LAUNCH = "/admin/training/trainingrun/launch/"


@pytest.fixture
def no_enqueue(monkeypatch):
    """Keep the launch from reaching a broker: these tests look at the web side only."""
    queued = []
    monkeypatch.setattr(launch, "_enqueue", queued.append)
    return queued


def test_the_launch_page_is_prefilled_and_queues_a_run(client, ml_engineer, labeled_workspace, tiny_base_model, no_enqueue, django_capture_on_commit_callbacks):
    client.force_login(ml_engineer)
    page = client.get(LAUNCH).content.decode()
    assert 'name="base_model" value="default"' in page and 'name="learning_rate" value="0.0002"' in page
    form = {"base_model": tiny_base_model, "device": "cpu", "epochs": 2, "batch_size": 16, "learning_rate": 0.001,
            "seed": 1, "max_length": 32, "validation_fraction": 0.1, "review_budget": 0.05}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(LAUNCH, form)
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/trainingrun/{run.pk}/change/")
    assert no_enqueue == [run.pk]
    assert run.config["epochs"] == 2 and run.requested_device == "cpu" and run.created_by == ml_engineer
    assert run.config["review_budget"] == 0.05 and run.config["label_smoothing"] is None  # what the form leaves out keeps the default


def test_the_launch_page_shows_why_it_refuses(client, ml_engineer, db, no_enqueue):
    client.force_login(ml_engineer)
    response = client.post(LAUNCH, {"base_model": "default", "device": "auto", "epochs": 1, "batch_size": 8,
                                    "learning_rate": 0.0002, "seed": 1, "max_length": 64, "validation_fraction": 0.1})
    assert "Training needs at least two intents" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_a_labeler_cannot_launch_or_promote(client, api_for, labeler, ml_engineer, labeled_workspace, tiny_options, no_enqueue):
    client.force_login(labeler)
    assert client.get(LAUNCH).status_code == 403
    run = services.training_run_start(user=ml_engineer, options=tiny_options)
    assert client.post(f"/admin/training/trainingrun/{run.pk}/promote/").status_code == 403
    api = api_for(labeler)
    assert api.post("/api/v1/training-runs/", {}, format="json").status_code == 403
    assert api.post(f"/api/v1/training-runs/{run.pk}/promote/", {}, format="json").status_code == 403
    assert api.get(f"/api/v1/training-runs/{run.pk}/").status_code == 200  # Labelers may watch


def test_the_api_launches_and_reports_a_run(api_for, ml_engineer, labeled_workspace, tiny_options, no_enqueue, django_capture_on_commit_callbacks):
    api = api_for(ml_engineer)
    bad = api.post("/api/v1/training-runs/", {"epochs": -1}, format="json")
    assert bad.status_code == 400 and "epochs must be" in bad.json()["config"][0]
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post("/api/v1/training-runs/", tiny_options, format="json")
    assert created.status_code == 201 and created.json()["status"] == "queued"
    run_id = created.json()["id"]
    services.training_run_execute(run_id=run_id)
    body = api.get(f"/api/v1/training-runs/{run_id}/").json()
    assert body["status"] == "succeeded" and body["progress"] == 1.0
    assert body["heldout"]["examples"] == 30 and "accuracy" in body["validation"]
    assert body["snapshot"]["train_count"] == 240
    promoted = api.post(f"/api/v1/training-runs/{run_id}/promote/", {}, format="json")
    assert promoted.status_code == 202 and promoted.json()["run"] == run_id and promoted.json()["status"] == "queued"
    promotion_id = promoted.json()["id"]
    services.model_promote_execute(promotion_id=promotion_id)  # what the worker's task does
    followed = api.get(f"/api/v1/promotions/{promotion_id}/").json()
    assert followed["status"] == "succeeded" and followed["promoted_at"] and followed["version_uri"].endswith("/versions/" + body["artifact_sha256"][:12])


def test_a_form_encoded_launch_keeps_the_defaults_it_leaves_out(api_for, ml_engineer, labeled_workspace, tiny_options, no_enqueue):
    api = api_for(ml_engineer)
    left_out = api.post("/api/v1/training-runs/", tiny_options, format="multipart")
    turned_off = api.post("/api/v1/training-runs/", {**tiny_options, "self_training": "false"}, format="multipart")
    assert left_out.status_code == turned_off.status_code == 201
    assert TrainingRun.objects.get(pk=left_out.json()["id"]).config["self_training"] is True
    assert TrainingRun.objects.get(pk=turned_off.json()["id"]).config["self_training"] is False


def test_the_run_page_shows_progress_and_then_results(client, ml_engineer, labeled_workspace, tiny_options, no_enqueue):
    client.force_login(ml_engineer)
    run = services.training_run_start(user=ml_engineer, options=tiny_options)
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert 'id="run-progress"' in page and "queued" in page and 'id="cancel-run"' in page
    progress = client.get(f"/admin/training/trainingrun/{run.pk}/progress/").json()
    assert progress["status"] == "queued" and progress["finished"] is False
    services.training_run_execute(run_id=run.pk)
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert "Results on the held-out set" in page
    assert 'id="confusion-matrix" src="data:image/png;base64,' in page and 'id="coverage-curve"' in page
    assert 'id="per-intent"' in page and 'id="promote-run"' in page
    listing = client.get("/admin/training/trainingrun/").content.decode()
    assert "Launch retraining" in listing


def test_cancel_from_the_run_page(client, ml_engineer, labeled_workspace, tiny_options, no_enqueue):
    client.force_login(ml_engineer)
    run = services.training_run_start(user=ml_engineer, options=tiny_options)
    client.post(f"/admin/training/trainingrun/{run.pk}/cancel/")
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED


def test_the_groups_hold_the_documented_permissions(db):
    from django.contrib.auth.models import Group

    from webapp.labeling.roles import ROLE_PERMISSIONS

    for name, expected in ROLE_PERMISSIONS.items():
        granted = {f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=name).permissions.all()}
        assert granted == set(expected)


def test_the_run_list_marks_the_production_run(client, ml_engineer, labeled_workspace, tiny_options, no_enqueue, serving_path):
    runs = [services.training_run_start(user=ml_engineer, options=tiny_options) for _ in range(2)]
    services.training_run_execute(run_id=runs[0].pk)
    services.model_promote(run=TrainingRun.objects.get(pk=runs[0].pk), user=ml_engineer)
    client.force_login(ml_engineer)
    listed = client.get("/admin/training/trainingrun/").context["cl"].result_list
    assert {run.pk: run.is_production for run in listed} == {runs[0].pk: True, runs[1].pk: False}


def _argparse_options(parser, leave_out) -> dict:
    return {action.dest: (action.option_strings, bool if action.nargs == 0 else action.type or str, action.default,
                          tuple(action.choices or ()))
            for action in parser._actions if action.dest not in leave_out}


def _cli_options() -> dict:
    import argparse

    from mlcore.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return _argparse_options(commands.choices["train"], {"help", "data", "out", "intents", "json"})


def _command_options() -> dict:
    from django.core.management.base import BaseCommand

    from webapp.training.management.commands.train import Command

    django_own = {action.dest for action in BaseCommand().create_parser("manage.py", "base")._actions}
    return _argparse_options(Command().create_parser("manage.py", "train"), django_own | {"user", "wait", "promote"})


def _form_options() -> dict:
    from django import forms

    from webapp.training.forms import LaunchForm

    kinds = {forms.BooleanField: bool, forms.IntegerField: int, forms.FloatField: float, forms.ChoiceField: str, forms.CharField: str}
    return {name: (kinds[type(f)], f.initial, getattr(f, "min_value", None), getattr(f, "max_value", None),
                   tuple(value for value, _ in getattr(f, "choices", ())), getattr(f, "max_length", None), f.help_text)
            for name, f in LaunchForm().fields.items()}


def _serializer_options() -> dict:
    from rest_framework import serializers

    from webapp.training.api.serializers import LaunchSerializer

    def kind(f):
        return next(t for cls, t in ((serializers.BooleanField, bool), (serializers.ChoiceField, str), (serializers.IntegerField, int),
                                     (serializers.FloatField, float), (serializers.CharField, str)) if isinstance(f, cls))

    return {name: (kind(f), f.default, getattr(f, "min_value", None), getattr(f, "max_value", None), tuple(getattr(f, "choices", ())),
                   getattr(f, "max_length", None), f.help_text)
            for name, f in LaunchSerializer().fields.items()}


def _declared(scope: str, surface: str) -> dict:
    from django.utils.html import escape

    from mlcore.config import TrainConfig

    def view(o):
        if surface in ("cli", "command"):
            return [o.flag], o.type, o.default, o.choices
        return o.type, o.default, o.min, o.max, o.choices, o.max_chars, escape(o.help) if surface == "form" else o.help

    return {o.name: view(o) for o in TrainConfig.options(scope)}


@pytest.mark.parametrize("surface, scope, listed", [
    ("cli", "cli", _cli_options), ("command", "launch", _command_options),
    ("form", "launch", _form_options), ("serializer", "launch", _serializer_options),
])
def test_each_surface_lists_exactly_the_options_trainconfig_declares_for_it(surface, scope, listed):
    """python -m mlcore train, manage.py train, the launch form and the API: the same names, flags,
    types, defaults, choices and bounds as TrainConfig declares for their scope, and nothing else."""
    assert listed() == _declared(scope, surface)
    if scope == "launch":
        assert services.LAUNCH_OPTIONS == tuple(_declared(scope, surface))


def test_the_run_page_says_when_no_worker_has_taken_the_run(queued, client, ml_engineer):
    from django.utils import timezone

    run = queued()
    client.force_login(ml_engineer)
    assert client.get(f"/admin/training/trainingrun/{run.pk}/progress/").json()["unclaimed_hint"] is None  # just launched
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timezone.timedelta(seconds=45))
    hint = client.get(f"/admin/training/trainingrun/{run.pk}/progress/").json()["unclaimed_hint"]
    assert hint.startswith(f"No worker has taken run #{run.pk} in 45 s") and "Q_CLUSTER_NAME=intentflow-training python manage.py qcluster" in hint
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert 'id="run-unclaimed"' in page and "No worker has taken run" in page
