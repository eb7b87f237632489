"""Promotion as one serialized, recoverable worker step: serving and the registry always agree."""

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from mlcore.artifact import file_sha256
from webapp.training import services
from webapp.training.services import promotion as steps
from webapp.training.services import publishing
from webapp.training.models import Promotion, PromotionLock, TrainingRun


def serving_state(serving_path) -> tuple[str | None, str | None]:
    """The SHA-256 of the .pt serving holds, and the artifact SHA-256 its ONNX export carries."""
    from mlcore.onnx_predictor import OnnxPredictor

    onnx = serving_path.with_suffix(".onnx")
    return (file_sha256(serving_path) if serving_path.exists() else None,
            OnnxPredictor.from_file(onnx).sha256 if onnx.exists() else None)


def assert_consistent(serving_path, expected_run: TrainingRun | None) -> None:
    """Serving holds exactly what the registry records, and nothing is left half-done."""
    sha = expected_run.artifact_sha256 if expected_run else None
    assert serving_state(serving_path) == (sha, sha)
    assert services.promoted_run() == expected_run
    assert PromotionLock.objects.get(pk=1).holder_id is None
    assert not [p for p in serving_path.parent.rglob("*.tmp")] if serving_path.parent.exists() else True


def fail_on_entry(monkeypatch, name: str) -> None:
    original = getattr(steps, name)

    def injected(*args, **kwargs):
        raise RuntimeError(f"injected failure before {name}")

    monkeypatch.setattr(steps, name, injected)
    assert original is not injected


def fail_switching_onnx(monkeypatch, serving_path) -> None:
    """The .pt record is already switched; the copy that serving watches fails."""
    original = publishing.storage_copy

    def copy(source_uri, target_uri):
        if target_uri == str(serving_path.with_suffix(".onnx")):
            raise OSError("injected failure switching model.onnx")
        return original(source_uri, target_uri)

    monkeypatch.setattr(publishing, "storage_copy", copy)


STEPS = ["_verify_artifact", "_apply_gate", "serving_export", "_choose_precision", "publish_version", "previous_version",
         "_switch_and_record", "switch model.onnx", "_record_success"]


def test_a_failure_between_any_two_steps_leaves_serving_and_the_registry_as_they_were(trained, ml_engineer, serving_path, monkeypatch):
    first, second = trained(), trained(seed=7)
    services.model_promote(run=first, user=ml_engineer)
    assert_consistent(serving_path, first)
    for step in STEPS:
        with monkeypatch.context() as patch:
            if step == "switch model.onnx":
                fail_switching_onnx(patch, serving_path)
            else:
                fail_on_entry(patch, step)
            with pytest.raises(ValidationError, match="injected failure"):
                services.model_promote(run=second, user=ml_engineer, override_reason="the gate is not under test")
        failed = Promotion.objects.filter(run=second).order_by("-id").first()
        assert failed.status == Promotion.Status.FAILED and "injected failure" in failed.error_message, step
        assert failed.finished_at and failed.promoted_at is None
        assert_consistent(serving_path, first)
    # Nothing stuck: the same promotion, asked again, goes through.
    services.model_promote(run=second, user=ml_engineer, override_reason="the gate is not under test")
    assert_consistent(serving_path, second)


def test_a_first_promotion_that_fails_at_the_switch_leaves_no_model(trained, ml_engineer, serving_path, monkeypatch):
    run = trained()
    fail_on_entry(monkeypatch, "_record_success")
    with pytest.raises(ValidationError, match="injected failure"):
        services.model_promote(run=run, user=ml_engineer)
    assert_consistent(serving_path, None)  # serving reads nothing the registry does not record


@pytest.mark.django_db(transaction=True)
def test_two_promotions_at_once_take_turns(trained, ml_engineer, serving_path, monkeypatch):
    first, second = trained(), trained(seed=7)
    requests = [services.model_promote_request(run=run, user=ml_engineer, override_reason="race", enqueue=False) for run in (first, second)]
    switching, overlaps = [], []
    original = steps.switch_live

    def slow_switch(version, live):
        if switching:
            overlaps.append(version.pt)
        switching.append(version.pt)
        time.sleep(0.3)  # widen the window a second promotion would slip into
        original(version, live)
        switching.remove(version.pt)

    monkeypatch.setattr(steps, "switch_live", slow_switch)

    def carry_out(promotion_id):
        try:
            services.model_promote_execute(promotion_id=promotion_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=carry_out, args=(p.pk,)) for p in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    done = list(Promotion.objects.order_by("promoted_at"))
    assert [p.status for p in done] == ["succeeded", "succeeded"], [p.error_message for p in done]
    assert not overlaps
    last = done[-1]
    assert last.previous_run == done[0].run  # the second saw the first as production
    assert_consistent(serving_path, last.run)


def test_a_storage_error_is_a_clear_message_on_the_run_page(trained, ml_engineer, settings, aws, moto_server, client):
    settings.AWS_S3_ENDPOINT_URL = moto_server
    settings.SERVING_MODEL_URI = "s3://no-such-bucket/production/model.pt"
    run = trained()
    with pytest.raises(ValidationError, match="Could not write s3://no-such-bucket/production/versions/"):
        services.model_promote(run=run, user=ml_engineer)
    promotion = Promotion.objects.get(run=run)
    assert promotion.status == Promotion.Status.FAILED and services.promoted_run() is None
    client.force_login(ml_engineer)
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/")
    assert page.status_code == 200
    assert f"Promotion #{promotion.pk}" in page.content.decode() and "serving kept the previous model" in page.content.decode()


def test_promoting_without_a_held_out_set_needs_a_recorded_reason(trained, ml_engineer, serving_path, client):
    from webapp.labeling import services as labeling
    from webapp.labeling.models import Utterance

    labeling.utterances_set_held_out(utterances=Utterance.objects.all(), held_out=False, user=ml_engineer)
    client.force_login(ml_engineer)
    assert "No held-out set exists" in client.get("/admin/training/trainingrun/launch/").content.decode()
    run = trained()
    assert run.heldout_report is None
    assert "No held-out set exists for this run" in client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    with pytest.raises(ValidationError, match="has no held-out set"):
        services.model_promote_request(run=run, user=ml_engineer)
    refused = client.post(f"/admin/training/trainingrun/{run.pk}/promote/", follow=True)
    assert "has no held-out set" in refused.content.decode() and not Promotion.objects.exists()
    promotion = services.model_promote(run=run, user=ml_engineer, override_reason="a first model for the demo")
    assert promotion.override_reason == "a first model for the demo" and promotion.heldout_accuracy is None
    assert_consistent(serving_path, run)


def test_the_admin_queues_the_promotion_and_the_page_follows_it(trained, ml_engineer, serving_path, client, django_capture_on_commit_callbacks):
    run = trained()
    client.force_login(ml_engineer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/admin/training/trainingrun/{run.pk}/promote/", follow=True)
    promotion = Promotion.objects.get()
    assert len(callbacks) == 1 and promotion.status == Promotion.Status.QUEUED
    assert "is queued" in response.content.decode() and 'data-pending="1"' in response.content.decode()
    assert client.get(f"/admin/training/trainingrun/{run.pk}/progress/").json()["promotions_pending"] == 1
    assert services.promoted_run() is None and not serving_path.exists()  # nothing published by the web request
    services.model_promote_execute(promotion_id=promotion.pk)
    assert services.model_promote_execute(promotion_id=promotion.pk) is None  # delivered twice, carried out once
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert 'data-pending="0"' in page and "Promoted by" in page
    assert_consistent(serving_path, run)


def test_a_promotion_abandoned_by_a_dead_worker_is_failed_by_the_sweep(trained, ml_engineer, settings):
    from django.utils import timezone

    run = trained()
    promotion = services.model_promote_request(run=run, user=ml_engineer, enqueue=False)
    Promotion.objects.filter(pk=promotion.pk).update(status=Promotion.Status.RUNNING,
                                                     requested_at=timezone.now() - timezone.timedelta(seconds=settings.PROMOTION_LOCK_SECONDS + 5))
    PromotionLock.objects.update_or_create(pk=1, defaults={"holder_id": promotion.pk, "expires_at": timezone.now() - timezone.timedelta(seconds=1)})
    assert services.jobs_sweep()["promotions_failed"] == 1
    promotion.refresh_from_db()
    assert promotion.status == Promotion.Status.FAILED and "stopped" in promotion.error_message


def served_precision(serving_path) -> str:
    from mlcore.onnx_predictor import OnnxPredictor

    return OnnxPredictor.from_file(serving_path.with_suffix(".onnx")).metadata["precision"]


def test_int8_is_served_when_it_passes_its_gate_and_the_run_page_says_so(trained, ml_engineer, serving_path, settings, client):
    settings.QUANTIZED_MAX_ACCURACY_DROP, settings.QUANTIZED_MIN_AGREEMENT = 0.5, 0.5  # the tiny model: the flow, not the figures
    run = trained()
    promotion = services.model_promote(run=run, user=ml_engineer, override_reason="no held-out set in this test")
    assert (promotion.served_precision, served_precision(serving_path)) == ("int8", "int8")
    check = promotion.quantization
    assert check["accepted"] and check["splits"]["validation"]["examples"] > 0 and check["ece_int8"] is not None
    client.force_login(ml_engineer)
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert "serving <strong>int8</strong>" in page and "of the validation set" in page


def test_fp32_is_served_when_int8_disagrees_and_the_run_page_says_why(trained, ml_engineer, serving_path, monkeypatch, client):
    import mlcore.quantize as quantize

    original = quantize.quantize_int8

    def disagreeing(fp32_path, out_path, **kwargs):
        """An int8 model whose intents are shifted by one: every answer differs from fp32's."""
        from mlcore.onnx_predictor import OnnxPredictor

        path = original(fp32_path, out_path, **kwargs)
        labels = OnnxPredictor.from_file(path).labels
        return quantize.rewrite_metadata(path, labels=labels[1:] + labels[:1])

    monkeypatch.setattr(quantize, "quantize_int8", disagreeing)
    run = trained()
    promotion = services.model_promote(run=run, user=ml_engineer, override_reason="no held-out set in this test")
    assert (promotion.served_precision, served_precision(serving_path)) == ("fp32", "fp32")
    assert not promotion.quantization["accepted"] and "agrees with fp32's on" in " ".join(promotion.quantization["reasons"])
    client.force_login(ml_engineer)
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert "serving <strong>fp32</strong>" in page and "the int8 model failed its gate" in page


def test_quantize_off_serves_fp32(trained, ml_engineer, serving_path, settings):
    settings.QUANTIZE = False
    promotion = services.model_promote(run=trained(), user=ml_engineer, override_reason="no held-out set in this test")
    assert (promotion.served_precision, promotion.quantization, served_precision(serving_path)) == ("fp32", None, "fp32")


def overtaken_at(monkeypatch, step: str, overtaker: Promotion) -> None:
    """At ``step`` of the first promotion to reach it, its lease runs out (a stalled worker) and
    ``overtaker`` is carried out from start to end."""
    from django.utils import timezone

    original, calls = getattr(steps, step), []

    def stalled(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(step)
        if len(calls) == 1:
            PromotionLock.objects.filter(pk=1).update(expires_at=timezone.now() - timezone.timedelta(seconds=1))
            assert services.model_promote_execute(promotion_id=overtaker.pk).status == Promotion.Status.SUCCEEDED
        return result

    monkeypatch.setattr(steps, step, stalled)


def recorded_copies(monkeypatch) -> list[tuple[str, str]]:
    copies, original = [], publishing.storage_copy

    def copy(source_uri, target_uri):
        copies.append((source_uri, target_uri))
        return original(source_uri, target_uri)

    monkeypatch.setattr(publishing, "storage_copy", copy)
    return copies


@pytest.mark.parametrize("earlier_model", [False, True], ids=["first-model", "replacing-a-model"])
@pytest.mark.parametrize("step", ["serving_export", "publish_version"])  # a step's check, and the fence at the switch
def test_a_promotion_that_outlived_its_lease_never_touches_what_another_published(trained, ml_engineer, serving_path, monkeypatch,
                                                                                 earlier_model, step):
    if earlier_model:
        services.model_promote(run=trained(seed=3), user=ml_engineer, override_reason="the gate is not under test")
    slow_run, fast_run = trained(), trained(seed=7)
    slow = services.model_promote_request(run=slow_run, user=ml_engineer, override_reason="race", enqueue=False)
    fast = services.model_promote_request(run=fast_run, user=ml_engineer, override_reason="race", enqueue=False)
    overtaken_at(monkeypatch, step, fast)
    copies = recorded_copies(monkeypatch)
    fast_done = []
    monkeypatch.setattr(steps, "_record_success", lambda record, version, original=steps._record_success: (
        original(record, version), fast_done.append(len(copies))))
    slow = services.model_promote_execute(promotion_id=slow.pk)
    assert slow.status == Promotion.Status.FAILED and "lease ran out" in slow.error_message
    assert Promotion.objects.get(pk=fast.pk).status == Promotion.Status.SUCCEEDED
    # After the overtaker's switch, the overtaken one copied nothing: no switch, no restore, no backfill.
    assert fast_done == [len(copies)]
    assert_consistent(serving_path, fast_run)


def test_a_promotion_failed_by_the_sweep_never_becomes_succeeded(trained, ml_engineer, serving_path, monkeypatch, settings):
    first, second = trained(), trained(seed=7)
    services.model_promote(run=first, user=ml_engineer)
    promotion = services.model_promote_request(run=second, user=ml_engineer, override_reason="the gate is not under test", enqueue=False)
    original = steps.publish_version

    def swept_meanwhile(*args, **kwargs):  # the sweep judged this one dead while it worked
        Promotion.objects.filter(pk=promotion.pk).update(status=Promotion.Status.FAILED, error_message="presumed dead")
        return original(*args, **kwargs)

    monkeypatch.setattr(steps, "publish_version", swept_meanwhile)
    promotion = services.model_promote_execute(promotion_id=promotion.pk)
    assert promotion.status == Promotion.Status.FAILED and promotion.promoted_at is None
    assert_consistent(serving_path, first)  # its switch undone


def test_the_sweep_leaves_a_promotion_that_waits_for_the_lock(trained, ml_engineer, settings):
    from django.utils import timezone

    run = trained()
    holder = services.model_promote_request(run=run, user=ml_engineer, enqueue=False)
    waiting = services.model_promote_request(run=run, user=ml_engineer, enqueue=False)
    long_ago = timezone.now() - timezone.timedelta(seconds=settings.PROMOTION_LOCK_SECONDS * 3)
    # Requested long ago (queued behind a slow training run), running now and beating while it waits.
    Promotion.objects.filter(pk__in=[holder.pk, waiting.pk]).update(status=Promotion.Status.RUNNING, requested_at=long_ago,
                                                                     heartbeat_at=timezone.now())
    PromotionLock.objects.update_or_create(pk=1, defaults={"holder_id": holder.pk, "expires_at": timezone.now() + timezone.timedelta(seconds=60)})
    assert services.jobs_sweep()["promotions_failed"] == 0
    Promotion.objects.filter(pk=waiting.pk).update(heartbeat_at=long_ago)  # then its worker died
    assert services.jobs_sweep()["promotions_failed"] == 1
    assert Promotion.objects.get(pk=waiting.pk).status == Promotion.Status.FAILED
    assert Promotion.objects.get(pk=holder.pk).status == Promotion.Status.RUNNING
