from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from simple_history.models import HistoricalRecords

# Utterances are short texts; the serving endpoint accepts up to 1000 characters too.
MAX_TEXT_LENGTH = 1000
INTENT_NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_.-]*$", "Use lowercase letters, digits, '_', '-' or '.', starting with a letter or digit (e.g. get_news)."
)


def fold_text(text: str) -> str:
    """The de-duplication form of a text: whitespace collapsed and case folded."""
    return " ".join(text.split()).casefold()


def text_key(text: str) -> str:
    """A fixed-size unique key of the folded text (a unique index on long texts would be too wide)."""
    return hashlib.sha256(fold_text(text).encode("utf-8")).hexdigest()


class Intent(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[INTENT_NAME_VALIDATOR])
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Utterance(models.Model):
    class Source(models.TextChoices):
        MANUAL = "manual", "Manual"
        IMPORT = "import", "Import"
        REVIEW = "review", "Review"
        API = "api", "API"

    text = models.TextField(max_length=MAX_TEXT_LENGTH)
    normalized_text = models.TextField(editable=False, help_text="Case- and whitespace-folded text, for de-duplication.")
    text_key = models.CharField(max_length=64, unique=True, editable=False)
    intent = models.ForeignKey(Intent, null=True, blank=True, on_delete=models.PROTECT, related_name="utterances")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MANUAL)
    # Held-out utterances never train; every run is evaluated on them, so runs compare on the same questions.
    is_held_out = models.BooleanField("held out for evaluation", default=False, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Who changed which label, from what to what, and when.
    history = HistoricalRecords(excluded_fields=["normalized_text", "text_key"])

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.text if len(self.text) <= 80 else self.text[:77] + "..."

    def save(self, *args, **kwargs) -> None:
        self.normalized_text = fold_text(self.text)
        self.text_key = text_key(self.text)
        super().save(*args, **kwargs)
