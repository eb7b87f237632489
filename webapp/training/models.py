from __future__ import annotations

from django.conf import settings
from django.core.files.storage import storages
from django.db import models
from django.utils import timezone


def artifact_storage():
    return storages["artifacts"]


class DatasetSnapshot(models.Model):
    """The exact rows a run trains and is evaluated on, frozen at launch."""

    created_at = models.DateTimeField(auto_now_add=True)
    # mlcore's fingerprint of the training (text, intent) pairs: unchanged data, same fingerprint.
    fingerprint = models.CharField(max_length=64, db_index=True)
    heldout_fingerprint = models.CharField(max_length=64, db_index=True)
    train_count = models.PositiveIntegerField()
    heldout_count = models.PositiveIntegerField()
    intent_counts = models.JSONField(default=dict)
    heldout_intent_counts = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"snapshot {self.fingerprint[:12]} ({self.train_count} train, {self.heldout_count} held out)"


class SnapshotRow(models.Model):
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.CASCADE, related_name="rows")
    # Not a foreign key: the snapshot must outlive later edits and deletions of the utterance.
    utterance_id = models.BigIntegerField(db_index=True)
    text = models.TextField()
    intent = models.CharField(max_length=100)
    held_out = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="runs")
    config = models.JSONField(help_text="mlcore.TrainConfig as a dict")
    requested_device = models.CharField(max_length=10)
    device_used = models.CharField(max_length=10, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker process")
    task_id = models.CharField(max_length=64, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0.0)
    latest_metrics = models.JSONField(null=True, blank=True, help_text="the latest validation metrics while training")
    metrics = models.JSONField(null=True, blank=True, help_text="mlcore's final metrics; 'test' is the held-out set")
    cancel_requested = models.BooleanField(default=False)
    error_message = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    artifact = models.FileField(storage=artifact_storage, upload_to="runs/", blank=True)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    artifact_size = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("promote_trainingrun", "Can promote a model version to production")]

    def __str__(self) -> str:
        return f"run #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        return self.step / self.total_steps if self.total_steps else 0.0

    @property
    def heldout_report(self) -> dict | None:
        return (self.metrics or {}).get("test")

    @property
    def validation_report(self) -> dict | None:
        return (self.metrics or {}).get("validation")

    @property
    def version(self) -> str:
        return self.artifact_sha256[:12]


class Promotion(models.Model):
    """One "Promote to production": requested in the web process, carried out by a worker.

    The registry's production model is the run of the latest *succeeded* promotion; a promotion
    that failed (refused by the gate, an export that disagrees, a storage error) leaves serving
    and the registry as they were, and says why in ``error_message``.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(TrainingRun, on_delete=models.PROTECT, related_name="promotions")
    previous_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    promoted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    requested_at = models.DateTimeField(default=timezone.now, db_index=True)
    promoted_at = models.DateTimeField(null=True, blank=True, db_index=True, help_text="when serving got the model")
    finished_at = models.DateTimeField(null=True, blank=True)
    serving_uri = models.CharField(max_length=500)
    version_uri = models.CharField(max_length=500, blank=True, help_text="where this version's files were published")
    heldout_accuracy = models.FloatField(null=True, blank=True)
    previous_heldout_accuracy = models.FloatField(null=True, blank=True, help_text="the replaced model on the same held-out questions")
    override_reason = models.TextField(blank=True, help_text="set when the promotion gate was overridden")
    error_message = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    # Beaten while the promotion waits for the publishing lock and while it renews it: the sweep
    # fails a running promotion only once it has been silent for a whole lease.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Which ONNX model serving got, and why: the int8 gate's figures (mlcore.quantize.QuantizationCheck).
    served_precision = models.CharField(max_length=8, blank=True, help_text="fp32 or int8")
    quantization = models.JSONField(null=True, blank=True, help_text="the int8 gate: accuracy, agreement, ECE, reasons")

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"promotion #{self.pk} of run #{self.run_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class PromotionLock(models.Model):
    """One row: the promotion that may publish now. Promotions take it in turn (a lease that a
    crashed worker cannot hold forever), so two of them never interleave their writes."""

    holder = models.ForeignKey(Promotion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    # The fencing token: one more at every acquisition (services.promotion._Lease).
    generation = models.PositiveBigIntegerField(default=0)
