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
    # The folded-text key of labeling.Utterance: identical texts always share a group.
    text_key = models.CharField(max_length=64, db_index=True)
    # The group one decision resolves: the text_key of the group's first text. Identical texts join
    # it at ingestion; near-duplicates join it when the worker groups them (services.review_items_group).
    group_key = models.CharField(max_length=64, db_index=True)
    predicted_intent = models.CharField(max_length=100, db_index=True)
    confidence = models.FloatField(db_index=True)
    top_intents = models.JSONField(help_text="the three most likely intents with their probabilities")
    margin = models.FloatField(help_text="probability of the first intent minus the second's")
    model_version = models.CharField(max_length=64, db_index=True)
    class Rule(models.TextChoices):
        IN_SCOPE_SCORE = "in_scope_score", "in-scope score"
        CONFIDENCE = "confidence", "confidence"

    # Which figure the threshold applied to: the model's in-scope score or the calibrated confidence.
    rule = models.CharField(max_length=14, choices=Rule.choices, default=Rule.CONFIDENCE)
    threshold = models.FloatField(help_text="the threshold of the rule that sent it")
    # The model's in-scope score (the share of its in-scope validation texts that looked less in
    # scope), for a model that has one; near 0 means the text looks out of scope.
    in_scope_score = models.FloatField(null=True, blank=True)
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
    # Near-duplicate grouping: the sentence embedding (float32, L2-normalised) made by the encoder of
    # the model that predicted the item; ``grouped`` once the worker has looked at the item (with or
    # without an embedding); ``kept_apart`` when a reviewer took it out of a group: never regrouped.
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    grouped = models.BooleanField(default=False)
    kept_apart = models.BooleanField(default=False)
    # The labeling screen leases a group to one reviewer for REVIEW_LEASE_SECONDS, so two reviewers
    # never get the same item.
    leased_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    leased_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["confidence", "received_at"]
        indexes = [
            # The queue's grouping: the first item and the size of each group of one status.
            models.Index(fields=["status", "group_key", "id"], name="review_group_idx"),
            models.Index(fields=["grouped", "model_version"], name="review_grouping_idx"),
            models.Index(fields=["reason", "status", "model_version"], name="review_audit_idx"),
        ]
        verbose_name = "review item"
        verbose_name_plural = "review queue"

    def __str__(self) -> str:
        return self.text if len(self.text) <= 80 else self.text[:77] + "..."


class TrafficReport(models.Model):
    """Predictions one serving container counted for one model version on one UTC day, since its
    previous report (see ``lambda/intentflow_serving/review.py``). The Traffic page sums them."""

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


class TrafficSample(models.Model):
    """A prediction serving answered with confidence, sent as a sample of the traffic
    (TRAFFIC_SAMPLE_RATE in serving). Nobody reviews it: a training run self-trains on the most
    recent samples (mlcore.self_training), labeled by its own first model, not by this prediction."""

    prediction_id = models.UUIDField(unique=True, help_text="From the serving app; makes ingestion idempotent.")
    text = models.TextField()
    # One sample per text (labeling.Utterance's folded key): a text asked again is the same sample,
    # made recent again, so repeated requests cannot fill the self-training pool with one text.
    text_key = models.CharField(max_length=64, unique=True, editable=False)
    predicted_intent = models.CharField(max_length=100, help_text="what the serving model answered (kept for reference)")
    model_version = models.CharField(max_length=64, db_index=True)
    predicted_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return self.text if len(self.text) <= 80 else self.text[:77] + "..."


class ReviewDecision(models.Model):
    """One decision made on the labeling screen: what it changed, so that its reviewer can undo it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    decided_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=14, choices=ReviewItem.Status.choices)
    intent = models.CharField(max_length=100, blank=True)
    item_ids = models.JSONField(default=list)
    # Utterances this decision created (undo deletes them) and unlabeled ones it labeled (undo clears them).
    created_utterance_ids = models.JSONField(default=list)
    labeled_utterance_ids = models.JSONField(default=list)
    # Each of those utterances' latest history row after the decision: undo is refused if any moved.
    utterance_versions = models.JSONField(default=dict)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-decided_at", "-id"]

    def __str__(self) -> str:
        return f"{self.status} {self.intent} ({len(self.item_ids)} items)"
