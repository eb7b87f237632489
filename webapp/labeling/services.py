"""Business actions of the labeling workspace. Admin, API and commands call these; nothing else writes.

Every action is keyword-only; bad input raises Django's ``ValidationError`` with a
message per field, which the admin shows on the form and the API returns as 400.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from mlcore.data import CLINC_SPLITS, read_rows
from mlcore.errors import DataError
from webapp.labeling.models import INTENT_NAME_VALIDATOR, MAX_TEXT_LENGTH, Intent, Utterance, fold_text, text_key

DB_CHUNK = 500
# CLINC150 splits whose rows are held out for evaluation when imported.
HELD_OUT_SPLITS = ("test", "oos_test")  # keys per IN (...) query: well under SQLite's and PostgreSQL's parameter limits


def clean_text(text: str) -> str:
    """Whitespace-normalized text, refused when empty or too long."""
    cleaned = " ".join(str(text).split())
    if not cleaned:
        raise ValidationError({"text": "The text is empty."})
    if len(cleaned) > MAX_TEXT_LENGTH:
        raise ValidationError({"text": f"The text has {len(cleaned)} characters; at most {MAX_TEXT_LENGTH} are allowed."})
    return cleaned


def _duplicate_message(existing: Utterance) -> str:
    label = existing.intent.name if existing.intent_id else "unlabeled"
    return f"An utterance with the same text already exists: #{existing.pk} {existing.text!r} ({label})."


def utterance_check_unique(text: str, *, exclude_pk: int | None = None) -> None:
    """Refuse a text whose folded form another utterance already has, naming that utterance."""
    others = Utterance.objects.select_related("intent").filter(text_key=text_key(text))
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    existing = others.first()
    if existing is not None:
        raise ValidationError({"text": _duplicate_message(existing)})


def intent_create(*, name: str, description: str = "", is_active: bool = True) -> Intent:
    intent = Intent(name=name.strip(), description=description, is_active=is_active)
    intent.full_clean()
    intent.save()
    return intent


def utterance_create(
    *, text: str, intent: Intent | None, source: str = Utterance.Source.MANUAL, user: AbstractBaseUser | None
) -> Utterance:
    cleaned = clean_text(text)
    utterance_check_unique(cleaned)
    return utterance_save(utterance=Utterance(text=cleaned, intent=intent, source=source), user=user)


def utterance_save(*, utterance: Utterance, user: AbstractBaseUser | None) -> Utterance:
    """Save a validated utterance, recording who created or changed it (and in the label history)."""
    if utterance.pk is None:
        utterance.created_by = user
    utterance.updated_by = user
    utterance._history_user = user
    try:
        with transaction.atomic():
            utterance.save()
    except IntegrityError:  # a concurrent insert of the same text won the race
        utterance_check_unique(utterance.text, exclude_pk=utterance.pk)
        raise
    return utterance


def utterance_update(
    *, utterance: Utterance, user: AbstractBaseUser | None, text: str | None = None, intent: Intent | None = ..., source: str | None = None
) -> Utterance:
    """Change the text and/or the label (``intent=None`` clears it; leave it out to keep it)."""
    if text is not None:
        cleaned = clean_text(text)
        utterance_check_unique(cleaned, exclude_pk=utterance.pk)
        utterance.text = cleaned
    if intent is not ...:
        utterance.intent = intent
    if source is not None:
        utterance.source = source
    return utterance_save(utterance=utterance, user=user)


def utterances_assign_intent(*, utterances: QuerySet[Utterance], intent: Intent | None, user: AbstractBaseUser | None) -> int:
    """Label (or, with ``intent=None``, unlabel) many utterances at once, with a history entry each."""
    changed = [u for u in utterances if u.intent_id != (intent.pk if intent else None)]
    for utterance in changed:
        utterance.intent = intent
        utterance.updated_by = user
    bulk_update_with_history(changed, Utterance, ["intent", "updated_by", "updated_at"], default_user=user, batch_size=DB_CHUNK)
    return len(changed)


def utterances_set_held_out(*, utterances: QuerySet[Utterance], held_out: bool, user: AbstractBaseUser | None) -> int:
    """Move utterances into (or out of) the evaluation set that training never sees."""
    changed = [u for u in utterances if u.is_held_out != held_out]
    for utterance in changed:
        utterance.is_held_out = held_out
        utterance.updated_by = user
    bulk_update_with_history(changed, Utterance, ["is_held_out", "updated_by", "updated_at"], default_user=user, batch_size=DB_CHUNK)
    return len(changed)


def utterances_clear_label(*, utterances: QuerySet[Utterance], user: AbstractBaseUser | None) -> int:
    return utterances_assign_intent(utterances=utterances, intent=None, user=user)


@dataclass
class Conflict:
    text: str
    intents: list[str]
    existing_id: int | None = None

    def __str__(self) -> str:
        where = f" (existing #{self.existing_id})" if self.existing_id else " (within the file)"
        return f"{self.text!r}: {' vs '.join(self.intents)}{where}"


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    held_out: int = 0
    duplicates: int = 0
    skipped_empty: int = 0
    intents_created: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return not self.conflicts and not self.errors

    def summary(self) -> str:
        if not self.written:
            problems = len(self.conflicts) + len(self.errors)
            return f"Nothing was imported: {problems} problem(s) in {self.rows} rows ({len(self.conflicts)} conflicting labels, {len(self.errors)} invalid rows)."
        return (f"Imported {self.created} utterances from {self.rows} rows; {self.duplicates} duplicates skipped, "
                f"{self.skipped_empty} empty rows skipped; {len(self.intents_created)} new intents.")


def utterances_import(
    *, path: str | Path, user: AbstractBaseUser | None, splits: Sequence[str] = ("train",),
    held_out_splits: Sequence[str] = HELD_OUT_SPLITS,
) -> ImportReport:
    """Import a CSV, JSONL or CLINC150 JSON file in one transaction: all rows, or none.

    Rows of a CLINC150 file's ``held_out_splits`` (its test splits) are held out for evaluation.
    Rows whose folded text already exists with the same label are skipped as duplicates.
    A text labeled two ways (in the file, or against the database) is a conflict; any
    conflict or invalid row writes nothing and is listed in the report.
    """
    try:
        by_split = read_rows(path)
    except DataError as exc:
        raise ValidationError({"file": str(exc)}) from None
    if len(by_split) > 1:  # a CLINC150 file: take the requested splits
        unknown = [s for s in splits if s not in CLINC_SPLITS]
        if unknown:
            raise ValidationError({"splits": f"Unknown split(s) {', '.join(unknown)}; choose from {', '.join(CLINC_SPLITS)}."})
        rows = [row for split in splits for row in by_split.get(split, [])]
        held_out_texts = {text_key(" ".join(t.split())) for s in splits if s in held_out_splits for t, _ in by_split.get(s, [])}
    else:
        rows, held_out_texts = by_split["train"], set()
    report = ImportReport(rows=len(rows))
    wanted = _collect_rows(rows, report)
    existing = _existing_labels(wanted.keys())
    new: dict[str, tuple[str, str]] = {}
    for key, (text, intents) in wanted.items():
        if len(intents) > 1:
            report.conflicts.append(Conflict(text, sorted(intents)))
            continue
        intent = next(iter(intents))
        if key in existing:
            existing_id, existing_intent = existing[key]
            if existing_intent == intent:
                report.duplicates += 1
            else:
                report.conflicts.append(Conflict(text, [existing_intent or "unlabeled", intent], existing_id))
            continue
        new[key] = (text, intent)
    if not report.written:
        return report
    with transaction.atomic():
        intents = _ensure_intents({intent for _, intent in new.values()}, report)
        objects = [
            Utterance(text=text, normalized_text=fold_text(text), text_key=key, intent=intents[intent],
                      source=Utterance.Source.IMPORT, is_held_out=key in held_out_texts, created_by=user, updated_by=user)
            for key, (text, intent) in new.items()
        ]
        bulk_create_with_history(objects, Utterance, batch_size=DB_CHUNK, default_user=user)
    report.created = len(objects)
    report.held_out = sum(1 for u in objects if u.is_held_out)
    return report


def _collect_rows(rows: Iterable[tuple[str, str]], report: ImportReport) -> dict[str, tuple[str, set[str]]]:
    wanted: dict[str, tuple[str, set[str]]] = {}
    seen_pairs: set[tuple[str, str]] = set()
    for number, (raw_text, raw_intent) in enumerate(rows, start=1):
        text, intent = " ".join(str(raw_text).split()), str(raw_intent).strip()
        if not text:
            report.skipped_empty += 1
            continue
        if len(text) > MAX_TEXT_LENGTH:
            report.errors.append(f"row {number}: the text has {len(text)} characters; at most {MAX_TEXT_LENGTH} are allowed")
            continue
        try:
            INTENT_NAME_VALIDATOR(intent)
        except ValidationError:
            report.errors.append(f"row {number}: {intent!r} is not a valid intent name")
            continue
        key = text_key(text)
        if (key, intent) in seen_pairs:
            report.duplicates += 1
            continue
        seen_pairs.add((key, intent))
        wanted.setdefault(key, (text, set()))[1].add(intent)
    return wanted


def _existing_labels(keys: Iterable[str]) -> dict[str, tuple[int, str | None]]:
    keys = list(keys)
    found: dict[str, tuple[int, str | None]] = {}
    for start in range(0, len(keys), DB_CHUNK):
        chunk = keys[start : start + DB_CHUNK]
        for key, pk, name in Utterance.objects.filter(text_key__in=chunk).values_list("text_key", "pk", "intent__name"):
            found[key] = (pk, name)
    return found


def _ensure_intents(names: set[str], report: ImportReport) -> dict[str, Intent]:
    existing = {i.name: i for i in Intent.objects.filter(name__in=names)}
    missing = sorted(names - existing.keys())
    Intent.objects.bulk_create([Intent(name=name) for name in missing], batch_size=DB_CHUNK)
    report.intents_created = missing
    return {i.name: i for i in Intent.objects.filter(name__in=names)}


EXPORT_FORMATS = ("csv", "jsonl")


def utterances_export(*, utterances: QuerySet[Utterance], fmt: str, stream: IO[str]) -> int:
    """Write labeled utterances as ``text,intent`` CSV or JSONL (the import formats); return the count."""
    if fmt not in EXPORT_FORMATS:
        raise ValidationError({"format": f"Unknown export format {fmt!r}; choose csv or jsonl."})
    rows = utterances.filter(intent__isnull=False).order_by("intent__name", "id").values_list("text", "intent__name")
    count = 0
    if fmt == "csv":
        writer = csv.writer(stream)
        writer.writerow(["text", "intent"])
        for text, intent in rows.iterator(chunk_size=2000):
            writer.writerow([text, intent])
            count += 1
    else:
        for text, intent in rows.iterator(chunk_size=2000):
            stream.write(json.dumps({"text": text, "intent": intent}, ensure_ascii=False) + "\n")
            count += 1
    return count


def intent_delete(*, intent: Intent) -> None:
    """Delete an intent that no utterance uses; refuse otherwise (labels are never dropped silently)."""
    used = intent.utterances.count()
    if used:
        raise ValidationError({"intent": f"Intent {intent.name!r} labels {used} utterance(s); relabel or clear them first."})
    intent.delete()
