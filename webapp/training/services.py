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
import time
import traceback
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from mlcore.config import TrainConfig
from mlcore.data import OOS_LABEL, Example, LabeledData, dataset_fingerprint
from mlcore.errors import ArtifactError, ConfigError, MlcoreError, TrainingCancelled
from webapp.labeling.models import Utterance
from webapp.training.models import DatasetSnapshot, Promotion, SnapshotRow, TrainingRun

logger = logging.getLogger(__name__)

# What the launch form and API may set; the rest of TrainConfig keeps mlcore's defaults.
LAUNCH_OPTIONS = ("base_model", "device", "epochs", "batch_size", "learning_rate", "seed", "max_length", "validation_fraction")
LOG_TAIL_LINES = 60


# ---------------------------------------------------------------------------------------------
# Launch


def training_config_build(*, options: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(options) - set(LAUNCH_OPTIONS))
    if unknown:
        raise ValidationError({"config": f"Unknown training option(s): {', '.join(unknown)}."})
    try:
        return TrainConfig(**{k: v for k, v in options.items() if v is not None and v != ""})
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
    return run


def _enqueue(run_id: int) -> None:
    from django_q.tasks import async_task

    task_id = async_task("webapp.training.tasks.training_run_task", run_id, task_name=f"training-run-{run_id}")
    TrainingRun.objects.filter(pk=run_id).update(task_id=task_id or "")


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


def training_run_execute(*, run_id: int) -> TrainingRun | None:
    """Train one queued run to its end. A run that is not queued (already started, finished or
    cancelled) is left alone, so a task delivered twice never trains twice."""
    from mlcore.train import resolve_device, train

    training_runs_fail_orphans()
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED, cancel_requested=False).update(
        status=TrainingRun.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker_identity(),
    )
    if not claimed:
        logger.warning("training run %s is not queued; not starting it", run_id)
        return None
    run = TrainingRun.objects.select_related("snapshot").get(pk=run_id)
    import torch

    # A worker forked from a parent that had imported torch starts with one intra-op thread.
    torch.set_num_threads(settings.TRAINING_THREADS)
    log = _RunLog()
    root = logging.getLogger()
    root.addHandler(log)
    outcome: dict[str, Any] = {}
    try:
        config = TrainConfig.from_dict(run.config)
        device = resolve_device(config.device)
        TrainingRun.objects.filter(pk=run_id).update(device_used=device)
        log.note(f"run #{run_id}: {run.snapshot.train_count} training rows, {run.snapshot.heldout_count} held out, "
                 f"device {device} ({torch.get_num_threads()} CPU threads), base model {config.base_model}")
        writer = _ProgressWriter(run_id, log, settings.TRAINING_PROGRESS_INTERVAL_SECONDS)
        result = train(config, snapshot_to_data(run.snapshot), progress=writer.progress, should_cancel=writer.should_cancel)
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / "model.pt"
            sha256 = result.save(local)
            with local.open("rb") as handle:
                run.artifact.save(f"run-{run_id}-{sha256[:12]}.pt", File(handle), save=False)
            outcome.update(artifact=run.artifact.name, artifact_sha256=sha256, artifact_size=local.stat().st_size)
        log.note(f"succeeded: artifact {run.artifact.name} ({outcome['artifact_size']} bytes, sha256 {sha256[:12]})")
        outcome.update(status=TrainingRun.Status.SUCCEEDED, metrics=result.metrics, device_used=result.metrics["training"]["device"])
    except TrainingCancelled as exc:
        log.note(str(exc))
        outcome.update(status=TrainingRun.Status.CANCELLED)
    except MlcoreError as exc:
        log.note(f"failed: {exc}")
        outcome.update(status=TrainingRun.Status.FAILED, error_message=str(exc))
    except Exception as exc:  # noqa: BLE001 - any crash must end as a failed run, with its reason
        log.note("failed:\n" + "".join(traceback.format_exc(limit=8)))
        outcome.update(status=TrainingRun.Status.FAILED, error_message=f"{type(exc).__name__}: {exc}")
    finally:
        root.removeHandler(log)
    TrainingRun.objects.filter(pk=run_id).update(finished_at=timezone.now(), heartbeat_at=timezone.now(), log_tail=log.text, **outcome)
    return TrainingRun.objects.get(pk=run_id)


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


def promoted_run() -> TrainingRun | None:
    promotion = Promotion.objects.select_related("run").first()
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
    """Both models' accuracy on the candidate's held-out questions (re-scoring the current model
    when it was evaluated on a different held-out set)."""
    candidate_report = candidate.heldout_report
    if not candidate_report:
        return None, None
    current_report = current.heldout_report
    if current_report and current.snapshot.heldout_fingerprint == candidate.snapshot.heldout_fingerprint:
        return candidate_report["accuracy"], current_report["accuracy"]
    from mlcore.predictor import Predictor
    from mlcore.scoring import evaluate_predictor

    data = snapshot_to_data(candidate.snapshot)
    with artifact_local_copy(current) as path:
        report = evaluate_predictor(Predictor.from_file(path), data.test, data.oos_test)
    return candidate_report["accuracy"], report["accuracy"]


def model_promote(*, run: TrainingRun, user: AbstractBaseUser | None, override_reason: str = "") -> Promotion:
    """Make ``run`` the production model: check it loads, apply the held-out gate, publish it.

    Rolling back is promoting an older run.
    """
    # torch-heavy imports stay out of the web process until a promotion needs them.
    from mlcore.artifact import file_sha256
    from mlcore.onnx_export import onnx_uri_for
    from mlcore.predictor import Predictor

    if run.status != TrainingRun.Status.SUCCEEDED:
        raise ValidationError({"run": f"Run #{run.pk} has not succeeded ({run.status}); only a succeeded run can be promoted."})
    override_reason = override_reason.strip()
    with artifact_local_copy(run) as path:
        if file_sha256(path) != run.artifact_sha256:
            raise ValidationError({"artifact": f"Run #{run.pk}'s stored artifact does not match its recorded SHA-256; it cannot be promoted."})
        try:
            Predictor.from_file(path)
        except ArtifactError as exc:
            raise ValidationError({"artifact": f"Run #{run.pk}'s artifact does not load, so it cannot be promoted: {exc}"}) from None
        current = promoted_run()
        candidate_accuracy = current_accuracy = None
        if current is not None and current.pk != run.pk:
            candidate_accuracy, current_accuracy = heldout_accuracies(candidate=run, current=current)
            margin = settings.PROMOTION_MAX_ACCURACY_DROP
            worse = candidate_accuracy is not None and current_accuracy is not None and candidate_accuracy < current_accuracy - margin
            if worse and not override_reason:
                raise ValidationError({"override_reason": (
                    f"Run #{run.pk} answers {candidate_accuracy:.1%} of the held-out questions correctly and the promoted "
                    f"run #{current.pk} {current_accuracy:.1%}: more than {margin * 100:.1f} points worse. "
                    "Give a reason to promote it anyway."
                )})
            if not worse:
                override_reason = ""
        elif run.heldout_report:
            candidate_accuracy = run.heldout_report["accuracy"]
        with tempfile.TemporaryDirectory() as folder:
            onnx_path = serving_export(artifact=path, folder=Path(folder), run=run)
            # The ONNX export first: serving watches it; the .pt beside it is the record.
            publish_artifact(source=onnx_path, uri=onnx_uri_for(settings.SERVING_MODEL_URI))
            publish_artifact(source=path, uri=settings.SERVING_MODEL_URI)
    return Promotion.objects.create(
        run=run, previous_run=current, promoted_by=user, serving_uri=settings.SERVING_MODEL_URI,
        heldout_accuracy=candidate_accuracy, previous_heldout_accuracy=current_accuracy, override_reason=override_reason,
    )


def serving_export(*, artifact: Path, folder: Path, run: TrainingRun) -> Path:
    """Export the artifact to ONNX for serving and check that it answers as the artifact does."""
    import numpy as np

    from mlcore.onnx_export import export_onnx
    from mlcore.onnx_predictor import OnnxPredictor
    from mlcore.predictor import Predictor

    target = export_onnx(artifact, folder / "model.onnx")
    rows = list(run.snapshot.rows.order_by("id").values_list("text", flat=True)[:32]) or ["hello"]
    gap = float(np.abs(OnnxPredictor.from_file(target).probabilities(rows) - Predictor.from_file(artifact).probabilities(rows)).max())
    if gap > 1e-4:
        raise ValidationError({"artifact": f"Run #{run.pk}'s ONNX export differs from the artifact by {gap:.2e}; it was not promoted."})
    return target


def publish_artifact(*, source: Path, uri: str) -> None:
    """Replace what ``uri`` holds in one step: readers see the old file or the new, never a mix."""
    if uri.startswith("s3://"):
        import boto3

        bucket, _, key = uri[len("s3://"):].partition("/")
        if not bucket or not key:
            raise ValidationError({"serving_uri": f"{uri} is not of the form s3://bucket/key."})
        # One PUT: S3 swaps the object atomically when the upload completes.
        boto3.client("s3", endpoint_url=settings.AWS_S3_ENDPOINT_URL).upload_file(str(source), bucket, key)
        return
    target = Path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle, source.open("rb") as reader:
            shutil.copyfileobj(reader, handle, 1 << 20)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes it owner-only; the serving process must read it
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
