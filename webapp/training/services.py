"""Business actions of retraining: launch, execute (in the worker), cancel, promote, and the checks.

Training itself is mlcore's; this module freezes the data, runs it in the background,
keeps the run row current, stores the artifact, and publishes promoted models.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from mlcore.config import TrainConfig
from mlcore.data import OOS_LABEL, Example, LabeledData, dataset_fingerprint
from mlcore.errors import ArtifactError, ConfigError, DataError, MlcoreError, TrainingCancelled
from mlcore.scoring import answered_share
from mlcore.files import atomic_write, is_s3_uri, parse_s3_uri
from webapp.labeling.models import Utterance
from webapp.review import selectors as review_selectors
from webapp.training.models import DatasetSnapshot, Promotion, SnapshotRow, TrainingRun

logger = logging.getLogger(__name__)

# What the launch form, the API and `manage.py train` may set (declared on TrainConfig); the rest keeps mlcore's defaults.
LAUNCH_OPTIONS = TrainConfig.option_names("launch")
LOG_TAIL_LINES = 60


# ---------------------------------------------------------------------------------------------
# Launch


def training_config_build(*, options: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(options) - set(LAUNCH_OPTIONS))
    if unknown:
        raise ValidationError({"config": f"Unknown training option(s): {', '.join(unknown)}."})
    try:
        # Serving's review routing (webapp/settings.py reads the variables serving reads): a run
        # pseudo-labels only the traffic serving would answer with confidence (TrainConfig.routing).
        routing = {"review_routing": settings.REVIEW_ROUTING, "ambiguity_margin": settings.AMBIGUITY_MARGIN,
                   "confidence_threshold": settings.CONFIDENCE_THRESHOLD, "in_scope_threshold": settings.IN_SCOPE_THRESHOLD}
        return TrainConfig(**routing, **{k: v for k, v in options.items() if v is not None and v != ""})
    except ConfigError as exc:
        raise ValidationError({"config": str(exc)}) from None
    except TypeError as exc:  # a wrong type that TrainConfig's checks did not catch
        raise ValidationError({"config": str(exc)}) from None


def training_data_check(*, min_examples: int | None = None) -> dict[str, int]:
    """Labeled, not held-out utterances per intent; refuse data that cannot train a useful model."""
    minimum = settings.MIN_EXAMPLES_PER_INTENT if min_examples is None else min_examples
    counts = dict(
        Utterance.objects.filter(intent__isnull=False, intent__is_active=True, is_held_out=False)
        .values_list("intent__name").annotate(n=Count("id")).order_by("intent__name")
    )
    in_scope = {name: n for name, n in counts.items() if name != OOS_LABEL}
    if len(in_scope) < 2:
        raise ValidationError({"data": f"Training needs at least two intents with labeled examples; there are {len(in_scope)}."})
    too_few = {name: n for name, n in in_scope.items() if n < minimum}
    if too_few:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(too_few.items(), key=lambda item: item[1]))
        raise ValidationError({"data": f"{len(too_few)} intent(s) have fewer than {minimum} labeled examples: {listed}. "
                                       "Label more, or deactivate them."})
    return counts


def heldout_count() -> int:
    """Labeled utterances held out for evaluation (of active intents): what the promotion gate compares on."""
    return Utterance.objects.filter(intent__isnull=False, intent__is_active=True, is_held_out=True).count()


def snapshot_create() -> DatasetSnapshot:
    """Freeze the labeled utterances of active intents: training rows and held-out rows.

    A snapshot with the same rows already frozen is reused: unchanged data, same snapshot.
    """
    rows = list(
        Utterance.objects.filter(intent__isnull=False, intent__is_active=True)
        .order_by("id").values_list("id", "text", "intent__name", "is_held_out")
    )
    train = [Example(text, intent) for _, text, intent, held_out in rows if not held_out]
    heldout = [Example(text, intent) for _, text, intent, held_out in rows if held_out]
    fingerprint, heldout_fingerprint = dataset_fingerprint(train), dataset_fingerprint(heldout)
    existing = DatasetSnapshot.objects.filter(fingerprint=fingerprint, heldout_fingerprint=heldout_fingerprint).first()
    if existing is not None:
        return existing
    snapshot = DatasetSnapshot.objects.create(
        fingerprint=fingerprint, heldout_fingerprint=heldout_fingerprint,
        train_count=len(train), heldout_count=len(heldout),
        intent_counts=_counts(train), heldout_intent_counts=_counts(heldout),
    )
    SnapshotRow.objects.bulk_create(
        [SnapshotRow(snapshot=snapshot, utterance_id=pk, text=text, intent=intent, held_out=held_out)
         for pk, text, intent, held_out in rows],
        batch_size=1000,
    )
    return snapshot


def _counts(examples: list[Example]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for example in examples:
        counts[example.intent] = counts.get(example.intent, 0) + 1
    return dict(sorted(counts.items()))


def training_run_start(*, user: AbstractBaseUser | None, options: dict[str, Any]) -> TrainingRun:
    """Check the options and the data, freeze a snapshot, and queue the run after the commit."""
    config = training_config_build(options=options)
    training_data_check()
    with transaction.atomic():
        snapshot = snapshot_create()
        run = TrainingRun.objects.create(
            snapshot=snapshot, config=config.to_dict(), requested_device=config.device, created_by=user,
        )
        transaction.on_commit(lambda: _enqueue(run.pk))
    run.refresh_from_db()  # failed already if the queue could not be reached
    return run


def training_queue() -> str:
    """The queue that training runs go to; the other jobs use the cluster's own (see settings.Q_CLUSTER)."""
    from django_q.conf import Conf

    return f"{Conf.PREFIX}-training"


def _queue_task(func: str, object_id: int, *, name: str, cluster: str | None = None) -> str:
    """Queue a task; an unreachable broker (Redis down) raises QueueUnavailable with the reason."""
    from django_q.tasks import async_task

    try:
        return async_task(func, object_id, task_name=name, cluster=cluster) or ""
    except Exception as exc:  # redis.ConnectionError, a database error with the ORM broker, ...
        raise QueueUnavailable(f"the job queue cannot be reached ({type(exc).__name__}: {_first_line(exc)})") from exc


class QueueUnavailable(Exception):
    pass


def _enqueue(run_id: int) -> None:
    """After the launch commits. If the broker is down the run would stay "queued" forever: it is
    failed at once with the reason instead, and can be launched again once the queue is back."""
    try:
        task_id = _queue_task("webapp.training.tasks.training_run_task", run_id, name=f"training-run-{run_id}", cluster=training_queue())
    except QueueUnavailable as exc:
        logger.error("run %s could not be queued: %s", run_id, exc)
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.FAILED, finished_at=timezone.now(),
            error_message=f"Run #{run_id} could not be queued: {exc}. Launch it again when the queue is back.",
        )
        return
    TrainingRun.objects.filter(pk=run_id).update(task_id=task_id)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


# A queued run no worker has taken after this long is probably waiting for a worker that is not
# running: the training queue has a cluster of its own, and a newcomer may start only the other one.
UNCLAIMED_RUN_SECONDS = 10


def training_run_unclaimed_hint(*, run: TrainingRun) -> str | None:
    """A sentence for a run still queued UNCLAIMED_RUN_SECONDS after its launch: no worker has
    taken it, and the command that starts the training queue's worker. None otherwise."""
    if run.status != TrainingRun.Status.QUEUED:
        return None
    waited = (timezone.now() - run.created_at).total_seconds()
    if waited < UNCLAIMED_RUN_SECONDS:
        return None
    return (f"No worker has taken run #{run.pk} in {waited:.0f} s. Training runs have a queue and a worker of their own; "
            f"start it with: Q_CLUSTER_NAME={training_queue()} python manage.py qcluster")


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """A queued run ends at once; a running one stops between two steps."""
    if run.is_finished:
        raise ValidationError({"status": f"Run #{run.pk} has already {run.status}."})
    now = timezone.now()
    if TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.CANCELLED, cancel_requested=True, finished_at=now
    ):
        run.refresh_from_db()
        return run
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    run.refresh_from_db()
    return run


# ---------------------------------------------------------------------------------------------
# Execution, in the worker


def snapshot_to_data(snapshot: DatasetSnapshot) -> LabeledData:
    """Training rows become train (oos rows: oos_train); held-out rows become the test split."""
    data = LabeledData(train=[])
    for text, intent, held_out in snapshot.rows.order_by("id").values_list("text", "intent", "held_out").iterator(chunk_size=2000):
        example = Example(text, intent)
        if intent == OOS_LABEL:
            (data.oos_test if held_out else data.oos_train).append(example)
        else:
            (data.test if held_out else data.train).append(example)
    return data


class _RunLog(logging.Handler):
    """The last lines of what the run logged, for the run page and for failures."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # pragma: no cover - logging must never break training
            pass

    def note(self, message: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {message}")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class _ProgressWriter:
    """Writes progress to the run row at most every ``interval`` seconds, and checks for cancel as often."""

    def __init__(self, run_id: int, log: _RunLog, interval: float) -> None:
        self.run_id, self.log, self.interval = run_id, log, interval
        self._last_write = self._last_check = 0.0
        self._cancelled = False
        self._last_epoch_logged: float | None = None

    def progress(self, progress) -> None:
        if progress.metrics and progress.metrics.get("epoch") != self._last_epoch_logged:
            self._last_epoch_logged = progress.metrics.get("epoch")
            m = progress.metrics
            self.log.note(f"epoch {m['epoch']:g}: validation accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, loss {m['loss']:.4f}")
        now = time.monotonic()
        if now - self._last_write < self.interval and progress.step != progress.total_steps:
            return
        self._last_write = now
        TrainingRun.objects.filter(pk=self.run_id).update(
            step=progress.step, total_steps=progress.total_steps, epoch=progress.epoch,
            latest_metrics=progress.metrics, heartbeat_at=timezone.now(), log_tail=self.log.text,
        )

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_check >= self.interval:
            self._last_check = now
            self._cancelled = TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()
        return self._cancelled


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Beating:
    """Calls ``beat`` from a thread every ``interval`` seconds until the block ends or ``beat``
    returns False: a run's heartbeat, a promotion's lease. Not started inside a caller's transaction
    (a test's): other connections could not see the rows it writes."""

    def __init__(self, name: str, beat: Callable[[], bool | None], interval: float) -> None:
        self.name, self.beat, self.interval = name, beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> "_Beating":
        if not transaction.get_connection().in_atomic_block:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(self.interval):
                try:
                    if self.beat() is False:
                        return
                except Exception:  # a busy database: the next beat tries again
                    logger.warning("%s could not be written", self.name, exc_info=True)
        finally:
            connection.close()  # this thread's own connection


def _run_heartbeat(run_id: int, interval: float) -> _Beating:
    """The run's heartbeat, written whatever phase the training is in (loading the encoder,
    centroids, an epoch, evaluation, calibration, storing the artifact): only a worker that is
    really gone goes silent and gets swept."""
    def beat() -> None:
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(heartbeat_at=timezone.now())

    return _Beating(f"heartbeat of run {run_id}", beat, interval)


def heartbeat_interval() -> float:
    """Several beats within the timeout, so one slow write never gets a live run swept."""
    return max(1.0, min(30.0, settings.TRAINING_HEARTBEAT_TIMEOUT_SECONDS / 5))


def training_run_execute(*, run_id: int) -> TrainingRun | None:
    """Train one queued run to its end. A run that is not queued (already started, finished or
    cancelled) is left alone, so a task delivered twice never trains twice."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED, cancel_requested=False).update(
        status=TrainingRun.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker_identity(),
    )
    if not claimed:
        logger.warning("training run %s is not queued; not starting it", run_id)
        return None
    log = _RunLog()
    root = logging.getLogger()
    root.addHandler(log)
    try:
        with _run_heartbeat(run_id, heartbeat_interval()):
            outcome = _train_and_store(run_id, log)
    finally:
        root.removeHandler(log)
    # Only a run that is still ours: the sweep may have failed it while this worker was stalled,
    # and a swept run must not flip back.
    finished = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
        finished_at=timezone.now(), heartbeat_at=timezone.now(), log_tail=log.text, **outcome,
    )
    if not finished:
        logger.error("run %s was ended by the sweep while its worker still ran; its outcome (%s) is not recorded", run_id, outcome.get("status"))
    return TrainingRun.objects.get(pk=run_id)


def _train_and_store(run_id: int, log: _RunLog) -> dict[str, Any]:
    """Train, store the artifact; the run row's final fields (status, metrics, artifact or error)."""
    import torch

    from mlcore.train import resolve_device, train

    run = TrainingRun.objects.select_related("snapshot").get(pk=run_id)
    # A worker forked from a parent that had imported torch starts with one intra-op thread.
    torch.set_num_threads(settings.TRAINING_THREADS)
    outcome: dict[str, Any] = {}
    try:
        config = TrainConfig.from_dict(run.config)
        device = resolve_device(config.device)
        TrainingRun.objects.filter(pk=run_id).update(device_used=device)
        log.note(f"run #{run_id}: {run.snapshot.train_count} training rows, {run.snapshot.heldout_count} held out, "
                 f"device {device} ({torch.get_num_threads()} CPU threads), base model {config.base_model}")
        writer = _ProgressWriter(run_id, log, settings.TRAINING_PROGRESS_INTERVAL_SECONDS)
        data = snapshot_to_data(run.snapshot)
        if config.self_training:
            data.unlabeled = review_selectors.traffic_sample_texts(limit=settings.TRAINING_UNLABELED_TEXTS)
            if data.unlabeled:
                log.note(f"self-training: {len(data.unlabeled)} traffic samples; a second pass trains on the confident ones")
        result = train(config, data, progress=writer.progress, should_cancel=writer.should_cancel)
        if "self_training" in result.metrics:
            report = result.metrics["self_training"]
            log.note(f"self-training: {report['pseudo_labels']} pseudo-labels; kept the {report['kept'].replace('_', ' ')} model"
                     + (f" ({report['reason']})" if report.get("reason") else ""))
        log.note("storing the artifact")
        outcome.update(_store_artifact(run, result))
        log.note(f"succeeded: artifact {outcome['artifact']} ({outcome['artifact_size']} bytes, sha256 {outcome['artifact_sha256'][:12]})")
        outcome.update(status=TrainingRun.Status.SUCCEEDED, metrics=result.metrics, device_used=result.metrics["training"]["device"])
    except TrainingCancelled as exc:
        log.note(str(exc))
        outcome.update(status=TrainingRun.Status.CANCELLED)
    except MlcoreError as exc:
        log.note(f"failed: {exc}")
        outcome.update(status=TrainingRun.Status.FAILED, error_message=str(exc))
    except OSError as exc:  # the disk is full, a file is too large, storage is unreachable
        log.note(f"failed: {exc}")
        outcome.update(status=TrainingRun.Status.FAILED, error_message=f"The artifact could not be written: {exc}")
    except Exception as exc:  # noqa: BLE001 - any crash must end as a failed run, with its reason
        log.note("failed:\n" + "".join(traceback.format_exc(limit=8)))
        outcome.update(status=TrainingRun.Status.FAILED, error_message=f"{type(exc).__name__}: {exc}")
    return outcome


def _store_artifact(run: TrainingRun, result) -> dict[str, Any]:
    """Write the artifact locally, then into artifact storage; nothing half-written is kept."""
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / "model.pt"
        sha256 = result.save(local)
        with local.open("rb") as handle:
            run.artifact.save(f"run-{run.pk}-{sha256[:12]}.pt", File(handle), save=False)
        return {"artifact": run.artifact.name, "artifact_sha256": sha256, "artifact_size": local.stat().st_size}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a dead child that nobody reaped yet is a zombie: not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def training_runs_fail_orphans() -> int:
    """Mark failed the runs whose worker died: its process is gone (same host) or it went silent."""
    host = socket.gethostname()
    silent_since = timezone.now() - timezone.timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT_SECONDS)
    failed = 0
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING):
        worker_host, _, pid = run.worker.rpartition(":")
        reason = None
        if worker_host == host and pid.isdigit() and not _process_alive(int(pid)):
            reason = f"The worker process {run.worker} ended while run #{run.pk} was training (it crashed or was killed)."
        elif run.heartbeat_at is None or run.heartbeat_at < silent_since:
            reason = (f"The worker {run.worker or '(unknown)'} has not reported for more than "
                      f"{settings.TRAINING_HEARTBEAT_TIMEOUT_SECONDS} seconds; it is presumed dead.")
        if reason and TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.FAILED, error_message=reason, finished_at=timezone.now(),
            log_tail=(run.log_tail + "\n" + reason).strip(),
        ):
            logger.error(reason)
            failed += 1
    return failed


# ---------------------------------------------------------------------------------------------
# The registry: promote, roll back, publish
#
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
        task_id = _queue_task("webapp.training.tasks.model_promote_task", promotion_id, name=f"promotion-{promotion_id}")
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
        _promotion_fail(promotion_id, f"{type(exc).__name__}: {_first_line(exc)}")
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


def _lease_renewal(lease: _Lease) -> _Beating:
    """Renews the lease from a thread every third of its term, so that one long step (an export, the
    int8 check) does not outlive it. A lease already lost stays lost: ``check`` at the next step and
    the switch's fence stop the promotion."""
    return _Beating(f"lease of promotion {lease.promotion_id}", lease.renew, max(0.5, lease.seconds / 3))


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
        _publish_version(version, artifact=artifact, onnx=onnx_path)
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


class ServingFiles:
    """Where a model's two files live: the live pair serving reads (SERVING_MODEL_URI and the
    .onnx beside it), or one version's pair under versions/<version>/ beside them."""

    def __init__(self, pt: str, onnx: str) -> None:
        self.pt, self.onnx = pt, onnx

    @classmethod
    def live(cls, uri: str) -> "ServingFiles":
        from mlcore.onnx_export import onnx_uri_for

        return cls(uri, onnx_uri_for(uri))

    @classmethod
    def for_version(cls, uri: str, version: str) -> "ServingFiles":
        live = cls.live(uri)
        folder = f"versions/{version}"
        return cls(_sibling(live.pt, f"{folder}/{_basename(live.pt)}"), _sibling(live.onnx, f"{folder}/{_basename(live.onnx)}"))

    @property
    def folder(self) -> str:
        return self.pt.rsplit("/", 1)[0]


def _basename(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def _sibling(uri: str, relative: str) -> str:
    return f"{uri.rsplit('/', 1)[0]}/{relative}" if "/" in uri else relative


def _publish_version(version: ServingFiles, *, artifact: Path, onnx: Path) -> None:
    """Step 3: this version's files under their own names; serving reads none of them."""
    publish_artifact(source=artifact, uri=version.pt)
    publish_artifact(source=onnx, uri=version.onnx)


def _previous_version(current: TrainingRun | None, live: ServingFiles) -> ServingFiles | None:
    """The files to restore if the switch fails: the current version's copy. Models promoted
    before versioned copies existed get theirs now, from what serving holds."""
    if current is None:
        return None
    previous = ServingFiles.for_version(live.pt, current.version)
    if not (storage_exists(previous.pt) and storage_exists(previous.onnx)) and storage_exists(live.pt) and storage_exists(live.onnx):
        storage_copy(live.pt, previous.pt)
        storage_copy(live.onnx, previous.onnx)
    return previous if storage_exists(previous.onnx) else None


def _switch_and_record(promotion: Promotion, lease: _Lease, current: TrainingRun | None, live: ServingFiles, version: ServingFiles) -> None:
    """Step 4: switch serving to ``version`` and record it, or put everything back as it was.

    The fence comes first, and its write keeps the lock row locked until the commit, so no other
    promotion can take the lock while this one switches or restores."""
    with transaction.atomic():
        lease.check()
        if promoted_run() != current:  # cannot happen while the fence holds; the gate judged against ``current``
            raise ValidationError({"promotion": "Another model was promoted while this promotion worked; request it again."})
        previous = _previous_version(current, live)
        try:
            _switch(version, live)  # the record first, then what serving watches
            _record_success(promotion, version)
        except BaseException:
            _restore(previous, live)
            raise


def _switch(version: ServingFiles, live: ServingFiles) -> None:
    storage_copy(version.pt, live.pt)
    storage_copy(version.onnx, live.onnx)


def _record_success(promotion: Promotion, version: ServingFiles) -> None:
    """Running to succeeded, never from any other state: a promotion the sweep has failed meanwhile
    stays failed, and its switch is undone."""
    now = timezone.now()
    if not Promotion.objects.filter(pk=promotion.pk, status=Promotion.Status.RUNNING).update(
            status=Promotion.Status.SUCCEEDED, promoted_at=now, finished_at=now, version_uri=version.folder, error_message=""):
        raise ValidationError({"promotion": "This promotion was marked failed while it worked; serving was put back as it was."})


def _restore(previous: ServingFiles | None, live: ServingFiles) -> None:
    """Serving back to the previous version; with none before, back to no model at all."""
    try:
        if previous is not None:
            _switch(previous, live)
        else:
            storage_delete(live.onnx)
            storage_delete(live.pt)
    except Exception:
        logger.exception("could not restore the serving files after a failed promotion; serving may hold an unrecorded model")


# -- the store serving reads: a local folder, or S3 ------------------------------------------------


def _split_s3(uri: str) -> tuple[str, str]:
    try:
        return parse_s3_uri(uri)
    except ValueError as exc:
        raise ValidationError({"serving_uri": f"{exc}."}) from None


def _s3():
    import boto3
    from botocore.config import Config

    # Bounded: a slow or unreachable S3 fails the promotion with a reason instead of hanging it.
    config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("s3", endpoint_url=settings.AWS_S3_ENDPOINT_URL, config=config)


@contextmanager
def _storage_errors(action: str, uri: str) -> Iterator[None]:
    try:
        yield
    except ValidationError:
        raise
    except Exception as exc:  # botocore's errors, OSError (disk full, permissions)
        raise ValidationError({"serving_uri": f"Could not {action} {uri}: {_first_line(exc)}"}) from exc


def publish_artifact(*, source: Path, uri: str) -> None:
    """Replace what ``uri`` holds in one step: readers see the old file or the new, never a mix."""
    with _storage_errors("write", uri):
        if is_s3_uri(uri):
            bucket, key = _split_s3(uri)
            _s3().upload_file(str(source), bucket, key)  # S3 swaps the object when the upload completes
            return
        with source.open("rb") as reader:
            _atomic_write(Path(uri), reader)


def _atomic_write(target: Path, reader) -> None:
    atomic_write(target, lambda handle: shutil.copyfileobj(reader, handle, 1 << 20))


def storage_copy(source_uri: str, target_uri: str) -> None:
    """Copy one published file to another name, atomically for readers of the target."""
    with _storage_errors("copy to", target_uri):
        if is_s3_uri(target_uri):
            source_bucket, source_key = _split_s3(source_uri)
            bucket, key = _split_s3(target_uri)
            _s3().copy({"Bucket": source_bucket, "Key": source_key}, bucket, key)
            return
        with Path(source_uri).open("rb") as reader:
            _atomic_write(Path(target_uri), reader)


def storage_exists(uri: str) -> bool:
    with _storage_errors("read", uri):
        if is_s3_uri(uri):
            from botocore.exceptions import ClientError

            bucket, key = _split_s3(uri)
            try:
                _s3().head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True
        return Path(uri).exists()


def storage_delete(uri: str) -> None:
    with _storage_errors("delete", uri):
        if is_s3_uri(uri):
            bucket, key = _split_s3(uri)
            _s3().delete_object(Bucket=bucket, Key=key)
            return
        Path(uri).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# The sweep (a django-q2 schedule) and the schedules themselves


def promotions_fail_abandoned() -> int:
    """Fail promotions left "running" by a worker that died: not the live holder of the lock, and
    silent (no heartbeat: neither waiting for the lock nor renewing it) for a whole lease."""
    from webapp.training.models import PromotionLock

    lock = PromotionLock.objects.filter(pk=1).first()
    live_holder = lock.holder_id if lock and lock.expires_at and lock.expires_at > timezone.now() else None
    silent_since = timezone.now() - timezone.timedelta(seconds=settings.PROMOTION_LOCK_SECONDS)
    abandoned = Promotion.objects.filter(status=Promotion.Status.RUNNING).exclude(pk=live_holder).filter(
        Q(heartbeat_at__lt=silent_since) | Q(heartbeat_at__isnull=True, requested_at__lt=silent_since))
    return abandoned.update(status=Promotion.Status.FAILED, finished_at=timezone.now(),
                            error_message="The worker carrying out this promotion stopped; serving kept the previous model. Request it again.")


def jobs_sweep() -> dict[str, int]:
    return {"runs_failed": training_runs_fail_orphans(), "promotions_failed": promotions_fail_abandoned()}


SCHEDULES = {
    # name: (function, the setting that holds its interval in minutes)
    "drain review queue": ("webapp.review.tasks.review_queue_drain_task", "REVIEW_DRAIN_MINUTES"),
    "sweep training jobs": ("webapp.training.tasks.jobs_sweep_task", "TRAINING_SWEEP_MINUTES"),
    "group review items": ("webapp.review.tasks.review_items_group_task", "REVIEW_GROUP_MINUTES"),
}


def schedules_sync() -> None:
    """Make the django-q2 schedules match the settings (after migrate and when a cluster starts)."""
    from django_q.models import Schedule

    for name, (func, setting) in SCHEDULES.items():
        minutes = getattr(settings, setting)
        schedule = Schedule.objects.filter(name=name).first()
        if schedule is None:
            Schedule.objects.create(name=name, func=func, schedule_type=Schedule.MINUTES, minutes=minutes, repeats=-1)
        elif (schedule.func, schedule.schedule_type, schedule.minutes) != (func, Schedule.MINUTES, minutes):
            schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats = func, Schedule.MINUTES, minutes, -1
            schedule.save()
