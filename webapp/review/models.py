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
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    utterance = models.ForeignKey(Utterance, null=True, blank=True, on_delete=models.SET_NULL, related_name="review_items")

    class Meta:
        ordering = ["confidence", "received_at"]
        indexes = [
            # The queue's grouping: the first item and the size of each group of identical texts of one status.
            models.Index(fields=["status", "text_key", "id"], name="review_group_idx"),
        ]
        verbose_name = "low-confidence prediction"
        verbose_name_plural = "low-confidence queue"

    def __str__(self) -> str:
        return self.text if len(self.text) <= 80 else self.text[:77] + "..."
