"""The registry: which run is promoted, the held-out gate, and promoting a run (one at a time,
under a fenced lease); the publish protocol is in docs/architecture.md."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mlcore.config import TrainConfig
from mlcore.data import LabeledData
from mlcore.errors import ArtifactError, DataError
from mlcore.scoring import answered_share
from webapp.training.models import Promotion, TrainingRun
from webapp.training.services.launch import QueueUnavailable, first_line, queue_task
from webapp.training.services.publishing import ServingFiles, previous_version, publish_version, restore_live, switch_live
from webapp.training.services.worker import Beating, snapshot_to_data

logger = logging.getLogger(__name__)

# A promotion is requested in the web process (cheap checks, no torch) and carried out by a
# worker, one at a time (PromotionLock). Its steps, in order:
#   1. verify the artifact (its SHA-256, it loads) and apply the held-out gate;
#   2. export to ONNX and check that the export answers as the artifact does;
#   3. publish this version's files under <serving dir>/versions/<version>/ (new names: nothing
#      that serving reads changes);
#   4. switch what serving reads (model.pt, the record, then model.onnx, which serving watches) and
#      record the promotion as succeeded, in one database transaction.
# A failure in steps 1-3 leaves serving untouched. A failure in step 4 rolls the transaction back
# and copies the previous version's files back, so serving and the registry agree again.
#
# The lock is a lease, renewed while the work goes on (between steps, and from a thread), and
# fenced: each acquisition bumps its generation, and step 4 starts with a conditional write that
# holds only for the generation this promotion acquired. A promotion that outlived its lease (a
# stalled worker) and was overtaken by another therefore fails before it writes anything serving
# reads, and a promotion that switched nothing never touches the live files.


def promoted_run() -> TrainingRun | None:
    promotion = Promotion.objects.filter(status=Promotion.Status.SUCCEEDED).select_related("run").order_by("-promoted_at", "-id").first()
    return promotion.run if promotion else None


@contextmanager
def artifact_local_copy(run: TrainingRun) -> Iterator[Path]:
    """The run's artifact as a local file, wherever the storage keeps it."""
    if not run.artifact:
        raise ValidationError({"artifact": f"Run #{run.pk} has no artifact."})
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / "model.pt"
        try:
            with run.artifact.open("rb") as source, local.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        except Exception as exc:  # storage backends raise their own error types
            raise ValidationError({"artifact": f"Run #{run.pk}'s artifact cannot be read from storage: {exc}."}) from None
        yield local


def heldout_accuracies(*, candidate: TrainingRun, current: TrainingRun) -> tuple[float | None, float | None]:
    """Both models' accuracy on the same questions: every in-scope held-out text of the candidate's
    snapshot, a text whose intent a model does not know counting as wrong for it
    (``mlcore.scoring.answered_share``); the current model is re-scored when it was evaluated on a
    different held-out set. Raises ValidationError when the current model cannot be re-scored."""
    from mlcore.scoring import answered_share

    candidate_report = candidate.heldout_report
    if not candidate_report:
        return None, None
    current_report = current.heldout_report
    if current_report and current.snapshot.heldout_fingerprint == candidate.snapshot.heldout_fingerprint:
        return answered_share(candidate_report), answered_share(current_report)
    return answered_share(candidate_report), _rescored_accuracy(current, snapshot_to_data(candidate.snapshot))


def _rescored_accuracy(run: TrainingRun, data: LabeledData) -> float:
    from mlcore.predictor import Predictor
    from mlcore.scoring import answered_share, evaluate_predictor

    with artifact_local_copy(run) as path:
        try:
            report = evaluate_predictor(Predictor.from_file(path), data.test, data.oos_test)
        except ArtifactError as exc:
            raise ValidationError({"artifact": f"Run #{run.pk}'s artifact does not load: {exc}"}) from None
        except DataError:  # it knows none of these intents: it can answer none of the questions
            return 0.0
    return answered_share(report)


def _no_heldout_message(run: TrainingRun) -> str:
    return (f"Run #{run.pk} has no held-out set, so nothing shows that it is good enough for production. "
            "Hold out some utterances and retrain, or give a reason to promote it anyway.")


def _worse_message(run: TrainingRun, current: TrainingRun, candidate_accuracy: float, current_accuracy: float) -> str:
    return (f"Run #{run.pk} answers {candidate_accuracy:.1%} of the held-out questions correctly and the promoted "
            f"run #{current.pk} {current_accuracy:.1%}: more than {settings.PROMOTION_MAX_ACCURACY_DROP * 100:.1f} points worse. "
            "Give a reason to promote it anyway.")


def _is_worse(candidate_accuracy: float | None, current_accuracy: float | None) -> bool:
    if candidate_accuracy is None or current_accuracy is None:
        return False
    return candidate_accuracy < current_accuracy - settings.PROMOTION_MAX_ACCURACY_DROP


def promotion_gate_precheck(*, run: TrainingRun, override_reason: str) -> None:
    """What the gate can decide from recorded metrics alone (in the web process, no torch): a run
    without a held-out set, or worse than production on the same held-out questions, needs a reason.
    The worker applies the whole gate again, re-scoring production on new held-out questions."""
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise ValidationError({"run": f"Run #{run.pk} has not succeeded ({run.status}); only a succeeded run can be promoted."})
    if not run.artifact:
        raise ValidationError({"artifact": f"Run #{run.pk} has no artifact."})
    if override_reason:
        return
    if not run.heldout_report:
        raise ValidationError({"override_reason": _no_heldout_message(run)})
    current = promoted_run()
    if current is None or current.pk == run.pk or not current.heldout_report:
        return
    if current.snapshot.heldout_fingerprint == run.snapshot.heldout_fingerprint:
        candidate_accuracy, current_accuracy = heldout_accuracies(candidate=run, current=current)
        if _is_worse(candidate_accuracy, current_accuracy):
            raise ValidationError({"override_reason": _worse_message(run, current, candidate_accuracy, current_accuracy)})


def model_promote_request(*, run: TrainingRun, user: AbstractBaseUser | None, override_reason: str = "", enqueue: bool = True) -> Promotion:
    """Record a promotion request and queue it for a worker (after the commit)."""
    override_reason = override_reason.strip()
    promotion_gate_precheck(run=run, override_reason=override_reason)
    with transaction.atomic():
        promotion = Promotion.objects.create(run=run, promoted_by=user, serving_uri=settings.SERVING_MODEL_URI, override_reason=override_reason)
        if enqueue:
            transaction.on_commit(lambda: _enqueue_promotion(promotion.pk))
    promotion.refresh_from_db()
    return promotion


def _enqueue_promotion(promotion_id: int) -> None:
    try:
        task_id = queue_task("webapp.training.tasks.model_promote_task", promotion_id, name=f"promotion-{promotion_id}")
    except QueueUnavailable as exc:
        logger.error("promotion %s could not be queued: %s", promotion_id, exc)
        _promotion_fail(promotion_id, f"The promotion could not be queued: {exc}. Request it again when the queue is back.")
        return
    Promotion.objects.filter(pk=promotion_id).update(task_id=task_id)


def model_promote(*, run: TrainingRun, user: AbstractBaseUser | None, override_reason: str = "") -> Promotion:
    """Request a promotion and carry it out in this process (scripts and tests); a promotion that
    fails raises ValidationError with its reason, and has changed nothing."""
    promotion = model_promote_request(run=run, user=user, override_reason=override_reason, enqueue=False)
    promotion = model_promote_execute(promotion_id=promotion.pk)
    if promotion.status != Promotion.Status.SUCCEEDED:
        raise ValidationError({"promotion": promotion.error_message})
    return promotion


def model_promote_execute(*, promotion_id: int) -> Promotion | None:
    """Carry out a queued promotion (in the worker). Delivered twice, it runs once."""
    if not Promotion.objects.filter(pk=promotion_id, status=Promotion.Status.QUEUED).update(
            status=Promotion.Status.RUNNING, heartbeat_at=timezone.now()):
        logger.warning("promotion %s is not queued; not carrying it out", promotion_id)
        return None
    try:
        with _publishing_lock(promotion_id) as lease:
            _promote(Promotion.objects.select_related("run__snapshot").get(pk=promotion_id), lease)
    except ValidationError as exc:
        _promotion_fail(promotion_id, " ".join(exc.messages))
    except Exception as exc:  # noqa: BLE001 - any crash ends as a failed promotion, with its reason
        logger.exception("promotion %s failed", promotion_id)
        _promotion_fail(promotion_id, f"{type(exc).__name__}: {first_line(exc)}")
    return Promotion.objects.get(pk=promotion_id)


def _promotion_fail(promotion_id: int, reason: str) -> None:
    Promotion.objects.filter(pk=promotion_id).exclude(status=Promotion.Status.SUCCEEDED).update(
        status=Promotion.Status.FAILED, error_message=reason, finished_at=timezone.now(),
    )


LEASE_LOST = ("The publishing lock's lease ran out while this promotion worked (another promotion may have published "
              "since); nothing that serving reads was changed. Request the promotion again.")


class _Lease:
    """The publishing lock as one promotion holds it. ``generation`` is the fencing token: it grows
    with every acquisition, so once this lease has run out and another promotion has taken the lock,
    ``renew`` never holds again for this one."""

    def __init__(self, promotion_id: int, generation: int, seconds: int) -> None:
        self.promotion_id, self.generation, self.seconds = promotion_id, generation, seconds

    def renew(self) -> bool:
        """Extend the lease if this promotion still holds it; one conditional UPDATE, which inside a
        transaction also keeps the lock row locked until the commit."""
        from webapp.training.models import PromotionLock

        now = timezone.now()
        renewed = PromotionLock.objects.filter(pk=1, holder_id=self.promotion_id, generation=self.generation, expires_at__gt=now).update(
            expires_at=now + timezone.timedelta(seconds=self.seconds))
        if renewed:
            Promotion.objects.filter(pk=self.promotion_id, status=Promotion.Status.RUNNING).update(heartbeat_at=now)
        return bool(renewed)

    def check(self) -> None:
        """Renew, or stop the promotion: it no longer holds the lock."""
        if not self.renew():
            raise ValidationError({"promotion": LEASE_LOST})


def _lease_renewal(lease: _Lease) -> Beating:
    """Renews the lease from a thread every third of its term, so that one long step (an export, the
    int8 check) does not outlive it. A lease already lost stays lost: ``check`` at the next step and
    the switch's fence stop the promotion."""
    return Beating(f"lease of promotion {lease.promotion_id}", lease.renew, max(0.5, lease.seconds / 3))


@contextmanager
def _publishing_lock(promotion_id: int) -> Iterator[_Lease]:
    """Hold the one publishing lock: wait while another promotion holds it (at most its lease),
    beating this promotion's heartbeat meanwhile so the sweep knows it is alive."""
    from django.db.models import F

    from webapp.training.models import PromotionLock

    PromotionLock.objects.get_or_create(pk=1)
    seconds = settings.PROMOTION_LOCK_SECONDS
    deadline = time.monotonic() + seconds
    while True:
        now = timezone.now()
        free = Q(holder__isnull=True) | Q(expires_at__lt=now)
        if PromotionLock.objects.filter(free, pk=1).update(holder_id=promotion_id, expires_at=now + timezone.timedelta(seconds=seconds),
                                                           generation=F("generation") + 1):
            break
        if time.monotonic() > deadline:
            raise ValidationError({"promotion": "Another promotion held the publishing lock for too long; request this one again."})
        Promotion.objects.filter(pk=promotion_id, status=Promotion.Status.RUNNING).update(heartbeat_at=now)
        time.sleep(0.2)
    lease = _Lease(promotion_id, PromotionLock.objects.values_list("generation", flat=True).get(pk=1), seconds)
    try:
        with _lease_renewal(lease):
            yield lease
    finally:
        PromotionLock.objects.filter(pk=1, holder_id=promotion_id, generation=lease.generation).update(holder=None, expires_at=None)


def _promote(promotion: Promotion, lease: _Lease) -> None:
    run = promotion.run
    with artifact_local_copy(run) as artifact, tempfile.TemporaryDirectory() as folder:
        _verify_artifact(run, artifact)
        current = promoted_run()
        _apply_gate(promotion, current)
        lease.check()
        onnx_path = serving_export(artifact=artifact, folder=Path(folder), run=run)
        lease.check()
        onnx_path = _choose_precision(promotion, onnx_path)
        lease.check()
        # Where the request said: the registry records exactly where serving's files went.
        live = ServingFiles.live(promotion.serving_uri)
        version = ServingFiles.for_version(promotion.serving_uri, run.version)
        publish_version(version, artifact=artifact, onnx=onnx_path)
        _switch_and_record(promotion, lease, current, live, version)


def _verify_artifact(run: TrainingRun, path: Path) -> None:
    from mlcore.artifact import file_sha256
    from mlcore.predictor import Predictor

    if file_sha256(path) != run.artifact_sha256:
        raise ValidationError({"artifact": f"Run #{run.pk}'s stored artifact does not match its recorded SHA-256; it cannot be promoted."})
    try:
        Predictor.from_file(path)
    except ArtifactError as exc:
        raise ValidationError({"artifact": f"Run #{run.pk}'s artifact does not load, so it cannot be promoted: {exc}"}) from None


def _apply_gate(promotion: Promotion, current: TrainingRun | None) -> None:
    """The held-out gate, in full; records both accuracies (and the override, when it was needed)."""
    run, override = promotion.run, promotion.override_reason
    candidate_accuracy = current_accuracy = None
    needed_override = not run.heldout_report
    if not run.heldout_report and not override:
        raise ValidationError({"override_reason": _no_heldout_message(run)})
    if current is not None and current.pk != run.pk:
        try:
            candidate_accuracy, current_accuracy = heldout_accuracies(candidate=run, current=current)
        except ValidationError as exc:  # production cannot be re-scored: only a reason lets the candidate through
            if not override:
                raise ValidationError({"override_reason": f"The promoted run #{current.pk} cannot be scored on run #{run.pk}'s held-out "
                                                          f"questions ({' '.join(exc.messages)}). Give a reason to promote anyway."}) from None
            candidate_accuracy, current_accuracy, needed_override = answered_share(run.heldout_report), None, True
        if _is_worse(candidate_accuracy, current_accuracy):
            if not override:
                raise ValidationError({"override_reason": _worse_message(run, current, candidate_accuracy, current_accuracy)})
            needed_override = True
    elif run.heldout_report:
        candidate_accuracy = answered_share(run.heldout_report)
    Promotion.objects.filter(pk=promotion.pk).update(
        previous_run=current, heldout_accuracy=candidate_accuracy, previous_heldout_accuracy=current_accuracy,
        override_reason=override if needed_override else "",
    )


def serving_export(*, artifact: Path, folder: Path, run: TrainingRun) -> Path:
    """Export the artifact to ONNX for serving and check that it answers as the artifact does."""
    import numpy as np

    from mlcore.onnx_export import export_onnx
    from mlcore.onnx_predictor import OnnxPredictor
    from mlcore.predictor import Predictor

    target = export_onnx(artifact, folder / "model.onnx")
    rows = list(run.snapshot.rows.order_by("id").values_list("text", flat=True)[:32]) or ["hello"]
    reference = Predictor.from_file(artifact)
    (served, served_scores), (expected, expected_scores) = OnnxPredictor.from_file(target).answer(rows), reference.answer(rows)
    gap = float(np.abs(served - expected).max())
    if (served_scores is None) != (expected_scores is None):
        raise ValidationError({"artifact": f"Run #{run.pk}'s ONNX export lost the in-scope score; it was not promoted."})
    # The in-scope score is a share of the reference texts: a distance off by float rounding may move it one text.
    score_gap = 0.0 if served_scores is None else float(np.abs(served_scores - expected_scores).max()) - 1.0 / len(reference.scorer.reference)
    if gap > 1e-4 or score_gap > 1e-9:
        raise ValidationError({"artifact": f"Run #{run.pk}'s ONNX export differs from the artifact by {max(gap, score_gap):.2e}; it was not promoted."})
    return target


def _choose_precision(promotion: Promotion, fp32_path: Path) -> Path:
    """The int8 copy of the export if it passes its gate on the run's own data, else fp32; the
    promotion records which, and the gate's figures."""
    if not settings.QUANTIZE:
        Promotion.objects.filter(pk=promotion.pk).update(served_precision="fp32", quantization=None)
        return fp32_path
    from mlcore.onnx_predictor import OnnxPredictor
    from mlcore.quantize import check_quantized, quantize_int8, rewrite_metadata

    int8_path = quantize_int8(fp32_path, fp32_path.with_name("model.int8.onnx"))
    check = check_quantized(
        OnnxPredictor.from_file(fp32_path), OnnxPredictor.from_file(int8_path), quantization_splits(promotion.run),
        max_accuracy_drop=settings.QUANTIZED_MAX_ACCURACY_DROP, min_agreement=settings.QUANTIZED_MIN_AGREEMENT,
    )
    precision = "int8" if check.accepted else "fp32"
    if check.accepted:  # keeps fp32's thresholds; the temperature and the in-scope reference refitted on the validation split
        rewrite_metadata(int8_path, temperature=check.temperature_int8,
                         **({"in_scope_scorer": check.in_scope_scorer_int8} if check.in_scope_scorer_int8 else {}))
    else:
        logger.info("run #%s: serving fp32, the int8 model failed its gate: %s", promotion.run_id, "; ".join(check.reasons))
    Promotion.objects.filter(pk=promotion.pk).update(served_precision=precision, quantization=check.to_dict())
    return int8_path if check.accepted else fp32_path


def quantization_splits(run: TrainingRun) -> dict[str, tuple[list[str], list[str]]]:
    """The run's validation split (rebuilt as training made it) and its held-out set, as (texts, intents)."""
    from mlcore.train import prepare_splits

    data = snapshot_to_data(run.snapshot)
    splits = prepare_splits(data, TrainConfig.from_dict(run.config))
    return {name: ([e.text for e in examples], [e.intent for e in examples])
            for name, examples in (("validation", splits.val), ("held-out", splits.test))}


def _switch_and_record(promotion: Promotion, lease: _Lease, current: TrainingRun | None, live: ServingFiles, version: ServingFiles) -> None:
    """Step 4: switch serving to ``version`` and record it, or put everything back as it was.

    The fence comes first, and its write keeps the lock row locked until the commit, so no other
    promotion can take the lock while this one switches or restores."""
    with transaction.atomic():
        lease.check()
        if promoted_run() != current:  # cannot happen while the fence holds; the gate judged against ``current``
            raise ValidationError({"promotion": "Another model was promoted while this promotion worked; request it again."})
        previous = previous_version(current, live)
        try:
            switch_live(version, live)  # the record first, then what serving watches
            _record_success(promotion, version)
        except BaseException:
            restore_live(previous, live)
            raise


def _record_success(promotion: Promotion, version: ServingFiles) -> None:
    """Running to succeeded, never from any other state: a promotion the sweep has failed meanwhile
    stays failed, and its switch is undone."""
    now = timezone.now()
    if not Promotion.objects.filter(pk=promotion.pk, status=Promotion.Status.RUNNING).update(
            status=Promotion.Status.SUCCEEDED, promoted_at=now, finished_at=now, version_uri=version.folder, error_message=""):
        raise ValidationError({"promotion": "This promotion was marked failed while it worked; serving was put back as it was."})
