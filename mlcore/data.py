"""Reading labeled examples, cleaning them, and splitting them.

Supported inputs: CSV with ``text,intent`` columns, JSONL with ``{"text", "intent"}``
objects, and the CLINC150 JSON layout (``{"train": [[text, intent], ...], "val": ...}``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from mlcore.errors import DataError

# The label CLINC150 uses for out-of-scope queries.
OOS_LABEL = "oos"

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Example:
    text: str
    intent: str


@dataclass
class LabeledData:
    """The splits found in one source. ``val``/``test`` are empty when the source has none."""

    train: list[Example]
    val: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    # Out-of-scope examples per split (CLINC's oos_train/oos_val/oos_test, or rows labeled "oos").
    oos_train: list[Example] = field(default_factory=list)
    oos_val: list[Example] = field(default_factory=list)
    oos_test: list[Example] = field(default_factory=list)
    # Texts nobody labeled (a sample of the traffic the model answered): with TrainConfig.self_training
    # the run labels the ones its first model is confident of and trains again (mlcore.self_training).
    unlabeled: list[str] = field(default_factory=list)

    @property
    def intents(self) -> list[str]:
        return sorted({e.intent for e in self.train})


def normalize_text(text: str) -> str:
    """Collapse runs of whitespace and strip the ends; case is kept (the tokenizer lowercases)."""
    return _WHITESPACE.sub(" ", text).strip()


def clean_examples(rows: Iterable[tuple[str, str]], *, source: str = "data") -> list[Example]:
    """Normalize whitespace, drop empty rows and exact duplicates, refuse conflicting labels."""
    examples: list[Example] = []
    labels_by_text: dict[str, set[str]] = defaultdict(set)
    seen: set[Example] = set()
    for text, intent in rows:
        example = Example(normalize_text(str(text)), normalize_text(str(intent)))
        if not example.text or not example.intent:
            continue
        labels_by_text[example.text].add(example.intent)
        if example not in seen:
            seen.add(example)
            examples.append(example)
    conflicts = {text: sorted(labels) for text, labels in labels_by_text.items() if len(labels) > 1}
    if conflicts:
        listed = "; ".join(f"{text!r} -> {', '.join(labels)}" for text, labels in sorted(conflicts.items())[:20])
        more = f" (and {len(conflicts) - 20} more)" if len(conflicts) > 20 else ""
        raise DataError(f"{source}: {len(conflicts)} text(s) are labeled with different intents: {listed}{more}.")
    return examples


def read_rows(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Read a CSV, JSONL or CLINC150 JSON file into raw ``(text, intent)`` rows per split.

    A CSV or JSONL file has one split, ``train``; a CLINC150 file has the six it holds.
    Nothing is cleaned here: callers with their own rules (the webapp's import) start from this.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file not found: {path}.")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded).") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return {"train": _read_csv(raw, path)}
    if suffix in {".jsonl", ".ndjson"}:
        return {"train": _read_jsonl(raw, path)}
    if suffix == ".json":
        return _read_clinc(raw, path)
    raise DataError(f"Unknown data format {suffix or '(no extension)'!r} for {path}: use .csv, .jsonl or CLINC150 .json.")


def load_labeled_data(path: str | Path) -> LabeledData:
    """Read a labeled file into cleaned splits; rows labeled ``oos`` become out-of-scope examples."""
    rows = read_rows(path)
    splits = {name: clean_examples(pairs, source=f"{path} ({name})" if len(rows) > 1 else str(path)) for name, pairs in rows.items()}
    data = LabeledData(**{name: splits.get(name, []) for name in CLINC_SPLITS})
    # An oos row inside an in-scope split belongs to the out-of-scope lists.
    for inscope, oos in (("train", "oos_train"), ("val", "oos_val"), ("test", "oos_test")):
        examples = getattr(data, inscope)
        getattr(data, oos).extend(e for e in examples if e.intent == OOS_LABEL)
        setattr(data, inscope, [e for e in examples if e.intent != OOS_LABEL])
    if not data.train and not data.oos_train:
        raise DataError(f"{path} holds no labeled examples.")
    if not data.train:
        raise DataError(f"{path} holds no in-scope training examples.")
    return data


def _read_csv(raw: str, path: Path) -> list[tuple[str, str]]:
    reader = csv.DictReader(raw.splitlines())
    columns = set(reader.fieldnames or [])
    missing = {"text", "intent"} - columns
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(sorted(missing))}: a CSV needs a header 'text,intent'.")
    return [(row["text"] or "", row["intent"] or "") for row in reader]


def _read_jsonl(raw: str, path: Path) -> list[tuple[str, str]]:
    rows = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict) or "text" not in record or "intent" not in record:
            raise DataError(f"{path} line {number} needs an object with 'text' and 'intent'.")
        rows.append((str(record["text"]), str(record["intent"])))
    return rows


CLINC_SPLITS = ("train", "val", "test", "oos_train", "oos_val", "oos_test")


def _read_clinc(raw: str, path: Path) -> dict[str, list[tuple[str, str]]]:
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(document, dict) or "train" not in document:
        raise DataError(f"{path} is not in the CLINC150 layout: expected an object with a 'train' list of [text, intent] pairs.")
    splits = {}
    for name in CLINC_SPLITS:
        pairs = document.get(name, [])
        if not isinstance(pairs, list) or any(not isinstance(p, list) or len(p) != 2 for p in pairs):
            raise DataError(f"{path}: split {name!r} must be a list of [text, intent] pairs.")
        splits[name] = [(str(t), str(i)) for t, i in pairs]
    return splits


def select_intents(data: LabeledData, intents: Sequence[str]) -> LabeledData:
    """Keep only the given intents (and all out-of-scope rows); used for slices of CLINC150."""
    wanted = set(intents)
    keep = lambda rows: [e for e in rows if e.intent in wanted]  # noqa: E731
    return LabeledData(
        train=keep(data.train), val=keep(data.val), test=keep(data.test),
        oos_train=list(data.oos_train), oos_val=list(data.oos_val), oos_test=list(data.oos_test),
    )


def check_trainable(examples: Sequence[Example], *, source: str = "the data") -> None:
    """Refuse data that cannot train a classifier."""
    if not examples:
        raise DataError(f"{source} holds no labeled examples.")
    intents = {e.intent for e in examples}
    if len(intents) < 2:
        only = next(iter(intents))
        raise DataError(f"{source} has one intent only ({only!r}): a classifier needs at least two.")


def stratified_split(
    examples: Sequence[Example], *, fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Split into (train, validation), taking ``fraction`` of each intent, with a fixed seed.

    Every intent keeps at least one training example; an intent with a single
    example contributes nothing to validation.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"The validation fraction must be between 0 and 1, got {fraction}.")
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example.intent].append(example)
    rng = random.Random(seed)
    train, val = [], []
    for intent in sorted(by_intent):
        rows = sorted(by_intent[intent], key=lambda e: e.text)
        rng.shuffle(rows)
        n_val = min(len(rows) - 1, round(len(rows) * fraction))
        val.extend(rows[:n_val])
        train.extend(rows[n_val:])
    return train, val


def dataset_fingerprint(examples: Iterable[Example]) -> str:
    """SHA-256 of the sorted (text, intent) pairs: equal data, equal fingerprint, whatever the order."""
    digest = hashlib.sha256()
    for text, intent in sorted((e.text, e.intent) for e in examples):
        digest.update(json.dumps([text, intent], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def intent_counts(examples: Iterable[Example]) -> dict[str, int]:
    return dict(sorted(Counter(e.intent for e in examples).items()))
