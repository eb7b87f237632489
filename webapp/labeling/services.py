"""Business actions of the labeling workspace. Admin, API and commands call these; nothing else writes.

Every action is keyword-only; bad input raises Django's ``ValidationError`` with a
message per field, which the admin shows on the form and the API returns as 400.

Every way a text comes in (admin form, API, import, review ingestion by HTTP, SQS or replay)
goes through ``clean_text``: what one way stores, another finds as a duplicate.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Iterable, Sequence

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from webapp.labeling.import_reader import ImportRow, csv_escape_formula, read_import_rows
from webapp.labeling.models import INTENT_NAME_VALIDATOR, MAX_TEXT_LENGTH, Intent, Utterance, fold_text, text_key

DB_CHUNK = 500  # keys per IN (...) query and rows per bulk insert: well under SQLite's and PostgreSQL's parameter limits
# CLINC150 splits whose rows are held out for evaluation when imported.
HELD_OUT_SPLITS = ("test", "oos_test")
INTENT_NAME_MAX_LENGTH = Intent._meta.get_field("name").max_length
# An import report lists this many conflicts and invalid rows, with the totals.
LISTED_PROBLEMS = 50
ADD_INTENT_PERMISSION = "labeling.add_intent"

# C0 and C1 control characters (DEL included) and lone UTF-16 surrogates, which JSON can carry
# ("\ud800") but neither PostgreSQL (NUL) nor UTF-8 (surrogates) can store.
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _space_or_nothing(match: re.Match) -> str:
    return " " if match.group().isspace() else ""


def strip_unstorable(text: str) -> str:
    """Control characters removed; tab, newline and the other whitespace controls become a space."""
    return _UNSTORABLE.sub(_space_or_nothing, text)


def clean_text(text: str) -> str:
    """The text as it is stored: control characters removed, whitespace collapsed; refused when
    empty or longer than MAX_TEXT_LENGTH once cleaned."""
    cleaned = " ".join(strip_unstorable(str(text)).split())
    if not cleaned:
        raise ValidationError({"text": "The text is empty."})
    if len(cleaned) > MAX_TEXT_LENGTH:
        raise ValidationError({"text": f"The text has {len(cleaned)} characters; at most {MAX_TEXT_LENGTH} are allowed."})
    return cleaned


def clean_intent_name(name: str) -> str:
    """An intent name as stored: refused (not repaired) when it is too long or has other characters."""
    cleaned = str(name).strip()
    if len(cleaned) > INTENT_NAME_MAX_LENGTH:
        raise ValidationError({"intent": f"The intent name has {len(cleaned)} characters; at most {INTENT_NAME_MAX_LENGTH} are allowed."})
    try:
        INTENT_NAME_VALIDATOR(cleaned)
    except ValidationError:
        raise ValidationError({"intent": f"{cleaned[:120]!r} is not a valid intent name: {INTENT_NAME_VALIDATOR.message}"}) from None
    return cleaned


def can_create_intents(user: AbstractBaseUser | None) -> bool:
    """Creating an intent is an ML engineer's right. No user: an operator's command, trusted."""
    return user is None or user.has_perm(ADD_INTENT_PERMISSION)


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


def utterance_delete(*, utterance: Utterance, user: AbstractBaseUser | None) -> None:
    """Delete an utterance; the label history records who did."""
    utterance._history_user = user
    utterance.delete()


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
    """What an import did or found. ``conflicts`` and ``errors`` hold the first LISTED_PROBLEMS
    of each; ``conflict_count`` and ``error_count`` the totals."""

    rows: int = 0
    created: int = 0
    held_out: int = 0
    duplicates: int = 0
    skipped_empty: int = 0
    intents_created: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    conflict_count: int = 0
    error_count: int = 0

    @property
    def written(self) -> bool:
        return not self.conflict_count and not self.error_count

    def add_conflict(self, conflict: Conflict) -> None:
        self.conflict_count += 1
        if len(self.conflicts) < LISTED_PROBLEMS:
            self.conflicts.append(conflict)

    def add_error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < LISTED_PROBLEMS:
            self.errors.append(message)

    def summary(self) -> str:
        if not self.written:
            problems = self.conflict_count + self.error_count
            return (f"Nothing was imported: {problems} problem(s) in {self.rows} rows "
                    f"({self.conflict_count} conflicting labels, {self.error_count} invalid rows).")
        return (f"Imported {self.created} utterances from {self.rows} rows; {self.duplicates} duplicates skipped, "
                f"{self.skipped_empty} empty rows skipped; {len(self.intents_created)} new intents.")


@dataclass
class _Wanted:
    """The rows of a file once read: one text per folded key, and what is wrong with them."""

    rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (text, intent)
    labels_in_conflict: dict[str, set[str]] = field(default_factory=dict)  # key -> every intent the file gives it
    first_row_of_intent: dict[str, str] = field(default_factory=dict)
    rows_of_intent: dict[str, int] = field(default_factory=dict)
    held_out_keys: set[str] = field(default_factory=set)


def utterances_import(
    *, path: str | Path, user: AbstractBaseUser | None, splits: Sequence[str] = ("train",),
    held_out_splits: Sequence[str] = HELD_OUT_SPLITS,
) -> ImportReport:
    """Import a CSV, JSONL or CLINC150 JSON file in one transaction: all rows, or none.

    The file is read as a stream within IMPORT_MAX_BYTES and IMPORT_MAX_ROWS; a file that cannot
    be read raises ValidationError with a message naming the row or line. Texts are cleaned as
    everywhere (``clean_text``); a CSV cell that the export escaped against formulas (a leading
    ``'``) comes back as it was. Rows of a CLINC150 file's ``held_out_splits`` (its test splits) are
    held out for evaluation. Rows whose folded text already exists with the same label are skipped
    as duplicates. A text labeled two ways (in the file, or against the database), an invalid row,
    or an intent that does not exist when ``user`` may not create intents (``can_create_intents``)
    writes nothing and is listed in the report.
    """
    report = ImportReport()
    rows = read_import_rows(path, splits=splits, max_bytes=settings.IMPORT_MAX_BYTES, max_rows=settings.IMPORT_MAX_ROWS)
    wanted = _collect_rows(rows, report, held_out_splits=set(held_out_splits))
    for key, intents in wanted.labels_in_conflict.items():
        report.add_conflict(Conflict(wanted.rows.pop(key)[0], sorted(intents)))
    _check_intents_exist(wanted, report, user=user)
    _drop_existing(wanted, report)
    if not report.written:
        return report
    with transaction.atomic():
        intents = _ensure_intents({intent for _, intent in wanted.rows.values()}, report)
        for chunk in _chunks(wanted.rows.items(), DB_CHUNK):
            objects = [
                Utterance(text=text, normalized_text=fold_text(text), text_key=key, intent=intents[intent],
                          source=Utterance.Source.IMPORT, is_held_out=key in wanted.held_out_keys, created_by=user, updated_by=user)
                for key, (text, intent) in chunk
            ]
            bulk_create_with_history(objects, Utterance, batch_size=DB_CHUNK, default_user=user)
            report.created += len(objects)
            report.held_out += sum(1 for u in objects if u.is_held_out)
    return report


def _collect_rows(rows: Iterable[ImportRow], report: ImportReport, *, held_out_splits: set[str]) -> _Wanted:
    wanted = _Wanted()
    names: dict[str, str] = {}  # one string object per intent name, however many rows use it
    for row in rows:
        report.rows += 1
        if row.problem:
            report.add_error(f"{row.where}: {row.problem}")
            continue
        if not strip_unstorable(row.text).strip():
            report.skipped_empty += 1
            continue
        try:
            text, intent = clean_text(row.text), clean_intent_name(row.intent)
        except ValidationError as exc:
            report.add_error(f"{row.where}: {' '.join(exc.messages)}")
            continue
        intent = names.setdefault(intent, intent)
        wanted.first_row_of_intent.setdefault(intent, row.where)
        wanted.rows_of_intent[intent] = wanted.rows_of_intent.get(intent, 0) + 1
        key = text_key(text)
        if row.split in held_out_splits:
            wanted.held_out_keys.add(key)
        known = wanted.rows.get(key)
        if known is None:
            wanted.rows[key] = (text, intent)
        elif known[1] == intent:
            report.duplicates += 1
        else:
            wanted.labels_in_conflict.setdefault(key, {known[1]}).add(intent)
    return wanted


def _check_intents_exist(wanted: _Wanted, report: ImportReport, *, user: AbstractBaseUser | None) -> None:
    """Without the right to create intents, a row whose intent does not exist is an error (one per intent)."""
    if can_create_intents(user):
        return
    named = set(wanted.rows_of_intent)
    missing = sorted(named - set(Intent.objects.filter(name__in=named).values_list("name", flat=True)))
    for name in missing:
        count = wanted.rows_of_intent[name]
        report.add_error(f"{wanted.first_row_of_intent[name]}: there is no intent {name!r} ({count} row(s) use it), "
                         "and only ML engineers can create intents: ask one to create it, or fix the file.")


def _drop_existing(wanted: _Wanted, report: ImportReport) -> None:
    """Texts already in the database: the same label is a duplicate, another label a conflict."""
    for chunk in _chunks(list(wanted.rows), DB_CHUNK):  # a copy of the keys: rows are popped on the way
        for key, pk, existing_intent in Utterance.objects.filter(text_key__in=chunk).values_list("text_key", "pk", "intent__name"):
            text, intent = wanted.rows.pop(key)
            if existing_intent == intent:
                report.duplicates += 1
            else:
                report.add_conflict(Conflict(text, [existing_intent or "unlabeled", intent], pk))


def _chunks(items: Iterable, size: int) -> Iterable[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _ensure_intents(names: set[str], report: ImportReport) -> dict[str, Intent]:
    existing = {i.name: i for i in Intent.objects.filter(name__in=names)}
    missing = sorted(names - existing.keys())
    Intent.objects.bulk_create([Intent(name=name) for name in missing], batch_size=DB_CHUNK)
    report.intents_created = missing
    return {i.name: i for i in Intent.objects.filter(name__in=names)}


EXPORT_FORMATS = ("csv", "jsonl")


def utterances_export(*, utterances: QuerySet[Utterance], fmt: str, stream: IO[str]) -> int:
    """Write labeled utterances as ``text,intent`` CSV or JSONL (the import formats); return the count.

    In CSV, a text that a spreadsheet would run as a formula (a leading =, +, -, @, tab or carriage
    return) gets a leading ``'``, as OWASP recommends; the import removes it again. JSONL is verbatim.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValidationError({"format": f"Unknown export format {fmt!r}; choose csv or jsonl."})
    rows = utterances.filter(intent__isnull=False).order_by("intent__name", "id").values_list("text", "intent__name")
    count = 0
    if fmt == "csv":
        writer = csv.writer(stream)
        writer.writerow(["text", "intent"])
        for text, intent in rows.iterator(chunk_size=2000):
            writer.writerow([csv_escape_formula(text), intent])
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
