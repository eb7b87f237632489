from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.labeling.models import Utterance


class ReviewItem(models.Model):
    """A prediction the serving app was unsure of, waiting for a person's decision."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        LABELED = "labeled", "Labeled"
        OUT_OF_SCOPE = "out_of_scope", "Out of scope"
        DISMISSED = "dismissed", "Dismissed"

    class Reason(models.TextChoices):
        LOW_CONFIDENCE = "low_confidence", "Low confidence"
        # A uniform random sample of all traffic (REVIEW_AUDIT_RATE in serving): estimates live accuracy.
        AUDIT = "audit", "Audit sample"

    prediction_id = models.UUIDField(unique=True, help_text="From the serving app; makes ingestion idempotent.")
    text = models.TextField()
    # The folded-text key of labeling.Utterance: identical texts form one group in the queue.
    text_key = models.CharField(max_length=64, db_index=True)
    predicted_intent = models.CharField(max_length=100, db_index=True)
    confidence = models.FloatField(db_index=True)
    top_intents = models.JSONField(help_text="the three most likely intents with their probabilities")
    margin = models.FloatField(help_text="probability of the first intent minus the second's")
    model_version = models.CharField(max_length=64, db_index=True)
    threshold = models.FloatField()
    predicted_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.PENDING, db_index=True)
    reason = models.CharField(max_length=14, choices=Reason.choices, default=Reason.LOW_CONFIDENCE, db_index=True,
                              help_text="why serving sent it: below the threshold, or drawn for the audit sample")
    # The intent the reviewer decided on ("oos" for out of scope), kept as a name: the audit estimate
    # compares it with the prediction even after the utterance is edited or deleted.
    reviewed_intent = models.CharField(max_length=100, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    utterance = models.ForeignKey(Utterance, null=True, blank=True, on_delete=models.SET_NULL, related_name="review_items")

    class Meta:
        ordering = ["confidence", "received_at"]
        indexes = [
            # The queue's grouping: the first item and the size of each group of identical texts of one status.
            models.Index(fields=["status", "text_key", "id"], name="review_group_idx"),
            models.Index(fields=["reason", "status", "model_version"], name="review_audit_idx"),
        ]
        verbose_name = "review item"
        verbose_name_plural = "review queue"

    def __str__(self) -> str:
        return self.text if len(self.text) <= 80 else self.text[:77] + "..."


class TrafficReport(models.Model):
    """Predictions one serving container counted for one model version on one UTC day, since its
    previous report (see ``lambda/serving_review.py``). The Traffic page sums them."""

    report_id = models.UUIDField(unique=True, help_text="From the serving app; makes ingestion idempotent.")
    day = models.DateField(db_index=True)
    model_version = models.CharField(max_length=64, db_index=True)
    predictions = models.PositiveIntegerField()
    low_confidence = models.PositiveIntegerField()
    audited = models.PositiveIntegerField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day", "model_version"]

    def __str__(self) -> str:
        return f"{self.day} {self.model_version}: {self.predictions} predictions"
