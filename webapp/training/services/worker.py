"""Executing a training run in the worker: the snapshot as data, mlcore's training, progress,
heartbeat and cancellation written to the run row, and the artifact stored."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Callable

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from mlcore.config import TrainConfig
from mlcore.data import OOS_LABEL, Example, LabeledData
from mlcore.errors import MlcoreError, TrainingCancelled
from webapp.training.models import DatasetSnapshot, TrainingRun


logger = logging.getLogger(__name__)
LOG_TAIL_LINES = 60


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


class Beating:
    """Calls ``beat`` from a thread every ``interval`` seconds until the block ends or ``beat``
    returns False: a run's heartbeat, a promotion's lease. Not started inside a caller's transaction
    (a test's): other connections could not see the rows it writes."""

    def __init__(self, name: str, beat: Callable[[], bool | None], interval: float) -> None:
        self.name, self.beat, self.interval = name, beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> "Beating":
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


def _run_heartbeat(run_id: int, interval: float) -> Beating:
    """The run's heartbeat, written whatever phase the training is in (loading the encoder,
    centroids, an epoch, evaluation, calibration, storing the artifact): only a worker that is
    really gone goes silent and gets swept."""
    def beat() -> None:
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(heartbeat_at=timezone.now())

    return Beating(f"heartbeat of run {run_id}", beat, interval)


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
            # Where the traffic samples come from is the project's configuration (the review app):
            # training depends on no app above it.
            data.unlabeled = import_string(settings.TRAINING_UNLABELED_TEXTS_SOURCE)(limit=settings.TRAINING_UNLABELED_TEXTS)
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
