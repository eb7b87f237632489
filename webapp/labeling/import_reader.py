"""Reading an import file row by row, within limits, for ``services.utterances_import``.

mlcore's reader loads a whole file into memory, which is right for training data on disk and
wrong for an upload: here a file is read line by line, its bytes and rows are counted while
reading, and every problem is a message that names the row (and line) it is on.

A problem that leaves the rest of the file unreadable (too big, not UTF-8, a quote that never
closes) stops the reading with a ``ValidationError`` on ``file``; a problem confined to one row
(a line that is not JSON, an object without a text) is yielded as that row's ``problem``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

from django.core.exceptions import ValidationError

from mlcore.data import CLINC_SPLITS
from webapp.labeling.models import MAX_TEXT_LENGTH

# One line of a CSV or JSONL file: a 1000-character text is at most 4 kB of UTF-8, 24 kB as JSON
# \u escapes; anything much longer is not an utterance, and reading it whole would cost memory.
MAX_LINE_BYTES = 64 * 1024
# One CSV record may span lines (a quoted newline); a quote that never closes would otherwise
# swallow the rest of the file into one field. (Not csv.field_size_limit: that is process-wide.)
MAX_RECORD_CHARS = 64 * MAX_TEXT_LENGTH
# A CLINC150 JSON document can only be parsed whole (the full data set is 2.5 MB).
MAX_JSON_DOCUMENT_BYTES = 50 * 1024 * 1024
# Leading characters that make a spreadsheet read a CSV cell as a formula (OWASP "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_escape_formula(text: str) -> str:
    """Prefix a single quote to a cell a spreadsheet would run as a formula.

    Texts that already start with quotes before a trigger get one more, so that
    ``csv_unescape_formula`` gives back exactly the original text.
    """
    return "'" + text if text.lstrip("'").startswith(FORMULA_TRIGGERS) else text


def csv_unescape_formula(text: str) -> str:
    """The inverse of ``csv_escape_formula``: an exported CSV imports as the original texts."""
    return text[1:] if text.startswith("'") and text.lstrip("'").startswith(FORMULA_TRIGGERS) else text


@dataclass(frozen=True)
class ImportRow:
    where: str  # "row 12 (line 13)", or "train item 7" in a CLINC150 file
    split: str
    text: str = ""
    intent: str = ""
    problem: str | None = None


class _Budget:
    """Counts what has been read and refuses to go past the limits."""

    def __init__(self, *, max_bytes: int, max_rows: int) -> None:
        self.max_bytes, self.max_rows = max_bytes, max_rows
        self.bytes = self.rows = 0

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        self.refuse_beyond(self.bytes)

    def refuse_beyond(self, size: int) -> None:
        if size > self.max_bytes:
            raise ValidationError({"file": f"The file is larger than the import limit of {describe_size(self.max_bytes)} "
                                           "(IMPORT_MAX_BYTES): split it into smaller files."})

    def add_row(self) -> None:
        self.rows += 1
        if self.rows > self.max_rows:
            raise ValidationError({"file": f"The file has more than {self.max_rows:,} rows, the import limit "
                                           "(IMPORT_MAX_ROWS): split it into smaller files."})


def describe_size(count: int) -> str:
    return f"{count / 1_000_000:,.1f} MB" if count >= 1_000_000 else f"{count:,} bytes"


def read_import_rows(
    path: str | Path, *, splits: Sequence[str], max_bytes: int, max_rows: int
) -> Iterator[ImportRow]:
    """The rows of a CSV, JSONL or CLINC150 JSON file (only ``splits`` of a CLINC150 file)."""
    path = Path(path)
    if not path.exists() or path.is_dir():  # not is_file(): a named pipe streams too
        raise ValidationError({"file": f"Data file not found: {path}."})
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise ValidationError({"file": f"Unknown data format {suffix or '(no extension)'!r}: use .csv, .jsonl or CLINC150 .json."})
    budget = _Budget(max_bytes=max_bytes, max_rows=max_rows)
    budget.refuse_beyond(path.stat().st_size)  # a file known to be too big is refused before reading any of it
    with path.open("rb") as handle:
        if suffix == ".csv":
            yield from _csv_rows(handle, budget)
        elif suffix == ".json":
            yield from _clinc_rows(handle, budget, splits)
        else:
            yield from _jsonl_rows(handle, budget)


def _lines(handle: IO[bytes], budget: _Budget, record: _RecordSize | None = None) -> Iterator[str]:
    """Decoded lines, counting bytes; a line too long or not UTF-8 stops the reading."""
    number = 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        budget.add_bytes(len(raw))
        if len(raw) > MAX_LINE_BYTES:
            raise ValidationError({"file": f"Line {number} is longer than {MAX_LINE_BYTES // 1024} kB: this is not a file of short texts."})
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark, as spreadsheets write
            raw = raw[3:]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError({"file": f"Line {number} is not UTF-8 text (byte {exc.start + 1} of the line cannot be "
                                           "decoded): save the file as UTF-8."}) from None
        if record is not None:
            record.add(len(line), number)
        yield line


class _RecordSize:
    """Characters read for the CSV record being parsed: an unclosed quote runs past the limit."""

    def __init__(self) -> None:
        self.chars, self.first_line = 0, 1

    def start(self, line: int) -> None:
        self.chars, self.first_line = 0, line

    def add(self, count: int, line: int) -> None:
        self.chars += count
        if self.chars > MAX_RECORD_CHARS:
            raise ValidationError({"file": f"The row starting on line {self.first_line} runs on past line {line} "
                                           f"(over {MAX_RECORD_CHARS:,} characters): probably a quote (\") that is never closed."})


def _csv_rows(handle: IO[bytes], budget: _Budget) -> Iterator[ImportRow]:
    record = _RecordSize()
    # Strict: a malformed quote is an error with its line, not a silently merged field.
    reader = csv.reader(_lines(handle, budget, record), strict=True)
    header = _next_record(reader, record, "the header")
    if header is None:
        raise ValidationError({"file": "The file is empty: a CSV needs a header 'text,intent'."})
    columns = [name.strip().lower() for name in header]
    missing = [name for name in ("text", "intent") if name not in columns]
    if missing:
        raise ValidationError({"file": f"The CSV lacks the column(s) {', '.join(missing)}: it needs a header 'text,intent'."})
    text_at, intent_at = columns.index("text"), columns.index("intent")
    number = 0
    while True:
        line = reader.line_num + 1
        fields = _next_record(reader, record, f"row {number + 1} (line {line})")
        if fields is None:
            return
        if not any(field.strip() for field in fields):
            continue  # a blank line
        number += 1
        budget.add_row()
        where = f"row {number} (line {line})"
        if len(fields) <= max(text_at, intent_at):
            yield ImportRow(where, "train", problem=f"has {len(fields)} field(s); expected a text and an intent")
            continue
        yield ImportRow(where, "train", csv_unescape_formula(fields[text_at]), fields[intent_at])


def _next_record(reader, record: _RecordSize, where: str) -> list[str] | None:
    record.start(reader.line_num + 1)
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise ValidationError({"file": f"The row starting on line {record.first_line} has a quote (\") that is never closed."}) from None
        raise ValidationError({"file": f"{where[0].upper()}{where[1:]} cannot be read as CSV ({exc})."}) from None


def _jsonl_rows(handle: IO[bytes], budget: _Budget) -> Iterator[ImportRow]:
    number = 0
    for line_number, line in enumerate(_lines(handle, budget), start=1):
        if not line.strip():
            continue
        number += 1
        budget.add_row()
        where = f"row {number} (line {line_number})"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield ImportRow(where, "train", problem=f"is not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})")
            continue
        yield _pair_row(where, "train", record.get("text") if isinstance(record, dict) else None,
                        record.get("intent") if isinstance(record, dict) else None)


def _clinc_rows(handle: IO[bytes], budget: _Budget, splits: Sequence[str]) -> Iterator[ImportRow]:
    limit = min(budget.max_bytes, MAX_JSON_DOCUMENT_BYTES)
    raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise ValidationError({"file": f"A CLINC150 JSON file is read whole and may be at most {describe_size(limit)}; "
                                       "use CSV or JSONL for bigger imports."})
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ValidationError({"file": f"The file is not UTF-8 text (byte {exc.start + 1} cannot be decoded)."}) from None
    except json.JSONDecodeError as exc:
        raise ValidationError({"file": f"The file is not valid JSON ({exc.msg} on line {exc.lineno}, column {exc.colno})."}) from None
    if not isinstance(document, dict) or not isinstance(document.get("train"), list):
        raise ValidationError({"file": "The file is not in the CLINC150 layout: expected an object with a 'train' list of [text, intent] pairs."})
    unknown = [s for s in splits if s not in CLINC_SPLITS]
    if unknown:
        raise ValidationError({"splits": f"Unknown split(s) {', '.join(unknown)}; choose from {', '.join(CLINC_SPLITS)}."})
    for split in splits:
        pairs = document.get(split, [])
        if not isinstance(pairs, list):
            raise ValidationError({"file": f"Split {split!r} must be a list of [text, intent] pairs."})
        for index, pair in enumerate(pairs, start=1):
            budget.add_row()
            where = f"{split} item {index}"
            if not isinstance(pair, list) or len(pair) != 2:
                yield ImportRow(where, split, problem="must be a [text, intent] pair")
                continue
            yield _pair_row(where, split, *pair)


def _pair_row(where: str, split: str, text: object, intent: object) -> ImportRow:
    if not isinstance(text, str) or not isinstance(intent, str):
        return ImportRow(where, split, problem="needs a 'text' and an 'intent', both strings")
    return ImportRow(where, split, text, intent)
