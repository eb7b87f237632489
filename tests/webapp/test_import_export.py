import csv
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from webapp.labeling import services
from webapp.labeling.models import Intent, Utterance
from tests.factories import CLINC_FULL, write_csv, write_jsonl

needs_clinc = pytest.mark.skipif(not CLINC_FULL.is_file(), reason="needs ../shared/data/clinc150")


@needs_clinc
def test_import_clinc150_full_through_the_command(db):
    out = io.StringIO()
    call_command("import_utterances", str(CLINC_FULL), stdout=out)
    assert Utterance.objects.count() == 15000
    assert Intent.objects.exclude(name="oos").count() == 150  # oos is made by a migration
    assert "Imported 15000 utterances" in out.getvalue()
    # Other splits on request. CLINC150's test split labels two of the training texts differently:
    # the import reports them and writes nothing.
    errors = io.StringIO()
    with pytest.raises(CommandError, match="2 conflicting labels"):
        call_command("import_utterances", str(CLINC_FULL), "--splits", "test,oos_test", stdout=out, stderr=errors)
    assert "'where did you grow up': how_old_are_you vs where_are_you_from" in errors.getvalue()
    assert Utterance.objects.count() == 15000
    call_command("import_utterances", str(CLINC_FULL), "--splits", "oos_train,oos_test", stdout=out)
    assert Utterance.objects.count() == 15000 + 100 + 1000
    assert Intent.objects.filter(name="oos").exists()


def test_export_then_import_round_trips(db, tmp_path, intent_factory, utterance_factory):
    news = intent_factory("get_news")
    utterance_factory("show me the news", news)
    utterance_factory("naïve café, \"quoted\" text", news)
    utterance_factory("no label yet", None)
    exported = tmp_path / "out.jsonl"
    call_command("export_utterances", "--format", "jsonl", "--output", str(exported))
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert {r["text"] for r in rows} == {"show me the news", "naïve café, \"quoted\" text"}
    Utterance.objects.all().delete()
    report = services.utterances_import(path=exported, user=None)
    assert report.created == 2 and Utterance.objects.filter(intent=news).count() == 2


def test_a_conflict_with_the_database_writes_nothing(db, tmp_path, intent_factory, utterance_factory):
    utterance_factory("play some jazz", intent_factory("play_music"))
    path = write_jsonl(tmp_path / "d.jsonl", [("new one", "x"), ("PLAY some jazz", "get_news")])
    report = services.utterances_import(path=path, user=None)
    assert not report.written and report.created == 0
    assert [str(c) for c in report.conflicts][0].startswith("'PLAY some jazz': play_music vs get_news (existing #")
    assert not Utterance.objects.filter(text="new one").exists()


def test_an_unlabeled_existing_text_is_reported_not_merged(db, tmp_path, utterance_factory):
    utterance_factory("hello there", None)
    report = services.utterances_import(path=write_csv(tmp_path / "d.csv", [("hello there", "greet")]), user=None)
    assert report.conflicts[0].intents == ["unlabeled", "greet"]


def test_invalid_rows_are_listed(db, tmp_path):
    path = write_csv(tmp_path / "d.csv", [("fine", "ok"), ("x" * 1001, "ok"), ("bad name", "Not An Intent")])
    report = services.utterances_import(path=path, user=None)
    assert not report.written and len(report.errors) == 2
    assert "row 2" in report.errors[0] and "'Not An Intent'" in report.errors[1]


def test_the_command_exits_2_with_a_sentence(db, tmp_path):
    with pytest.raises(CommandError, match="Data file not found") as failure:
        call_command("import_utterances", str(tmp_path / "missing.csv"))
    assert failure.value.returncode == 2
    path = write_csv(tmp_path / "c.csv", [("a", "x"), ("a", "y")])
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_utterances", str(path), stderr=io.StringIO())


# Limits and parse errors: a file is read as a stream within IMPORT_MAX_BYTES and IMPORT_MAX_ROWS,
# and whatever cannot be read is a sentence that names the row or line.

def import_error(path, **kwargs) -> str:
    with pytest.raises(ValidationError) as failure:
        services.utterances_import(path=path, user=None, **kwargs)
    return " ".join(failure.value.messages)


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(db, tmp_path, settings):
    settings.IMPORT_MAX_BYTES = 1000
    path = write_csv(tmp_path / "big.csv", [(f"text number {n}", "x") for n in range(100)])
    assert "larger than the import limit of 1,000 bytes (IMPORT_MAX_BYTES)" in import_error(path)
    assert not Utterance.objects.exists()


def test_a_file_that_grows_past_the_byte_limit_while_read_is_stopped(db, tmp_path, settings):
    # A named pipe has no size up front: only counting while reading can stop it.
    import os
    import threading

    settings.IMPORT_MAX_BYTES = 1000
    pipe = tmp_path / "stream.csv"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_bytes(b"text,intent\n" + b"some text,x\n" * 200), daemon=True)
    writer.start()
    with pytest.raises(ValidationError, match="IMPORT_MAX_BYTES"):
        services.utterances_import(path=pipe, user=None)
    writer.join(timeout=1)


def test_a_file_over_the_row_limit_is_refused(db, tmp_path, settings):
    settings.IMPORT_MAX_ROWS = 10
    path = write_jsonl(tmp_path / "many.jsonl", [(f"text number {n}", "x") for n in range(11)])
    assert "more than 10 rows, the import limit (IMPORT_MAX_ROWS)" in import_error(path)


@pytest.mark.parametrize(
    "content, message",
    [
        # A quote that never closes would swallow the rest of the file into one field.
        (b'text,intent\nfine,x\n"runaway,x\n' + b"more text,x\n" * 10_000, "row starting on line 3 runs on past line 5"),
        (b'text,intent\nfine,x\n"runaway,x\nmore text,x\n', "The row starting on line 3 has a quote (\") that is never closed."),
        (b'text,intent\n"quoted"then more,x\n', "Row 1 (line 2) cannot be read as CSV (',' expected after '\"')"),
        (b"text,intent\nfine,x\ncaf\xe9,x\n", "Line 3 is not UTF-8 text (byte 4 of the line"),
        (b"text,intent\n" + b"x" * 70_000 + b",x\n", "Line 2 is longer than 64 kB"),
        (b"words,label\nfine,x\n", "lacks the column(s) text, intent"),
        (b"", "The file is empty"),
        (b"text,intent\nfine,x\r\nbad\rline,x\n", "Row 2 (line 3) cannot be read as CSV"),
    ],
)
def test_a_csv_that_cannot_be_read_names_the_line(db, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    assert message in import_error(path)


def test_a_bad_jsonl_line_is_a_row_error_and_the_rest_is_read(db, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine", "intent": "x"}\n{"text": "cut off\n\n{"text": 7, "intent": "x"}\n{"text": "\\u0000", "intent": "x"}\n')
    report = services.utterances_import(path=path, user=None)
    assert report.errors == ["row 2 (line 2): is not valid JSON (Invalid control character at column 18)",
                             "row 3 (line 4): needs a 'text' and an 'intent', both strings"]
    assert report.skipped_empty == 1 and not report.written


def test_the_first_fifty_conflicts_and_errors_are_listed_with_the_totals(db, tmp_path):
    rows = [(f"text {n}", label) for n in range(60) for label in ("a", "b")] + [(f"bad {n}", "Bad Name") for n in range(70)]
    path = write_csv(tmp_path / "d.csv", rows)
    report = services.utterances_import(path=path, user=None)
    assert (len(report.conflicts), report.conflict_count, len(report.errors), report.error_count) == (50, 60, 50, 70)
    assert report.summary() == "Nothing was imported: 130 problem(s) in 190 rows (60 conflicting labels, 70 invalid rows)."
    errors = io.StringIO()
    with pytest.raises(CommandError, match="Nothing was imported: 130 problem") as failure:
        call_command("import_utterances", str(path), stderr=errors)
    assert failure.value.returncode == 2
    lines = errors.getvalue().splitlines()
    assert sum(line.startswith("conflict: 'text") for line in lines) == 50
    assert "conflict: ... and 10 more (60 in all; the first 50 are listed)" in lines
    assert "invalid: ... and 20 more (70 in all; the first 50 are listed)" in lines


def test_the_admin_lists_the_first_fifty_with_the_totals(client, ml_engineer, tmp_path):
    rows = [(f"text {n}", label) for n in range(60) for label in ("a", "b")]
    upload = SimpleUploadedFile("d.csv", write_csv(tmp_path / "d.csv", rows).read_bytes())
    client.force_login(ml_engineer)
    body = client.post("/admin/labeling/utterance/import/", {"file": upload}).content.decode()
    assert '<td id="report-conflict-count">60</td>' in body and "The first 50 of 60:" in body
    assert body.count("(within the file)</li>") == 50


def test_the_command_exits_2_with_a_sentence_on_a_file_it_cannot_read(db, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text,intent\n\xff\xfe,x\n")
    with pytest.raises(CommandError, match=r"^Line 2 is not UTF-8 text") as failure:
        call_command("import_utterances", str(path))
    assert failure.value.returncode == 2


def test_an_admin_upload_over_the_limit_is_refused_with_the_reason(client, ml_engineer, settings):
    settings.IMPORT_MAX_BYTES = 1000
    client.force_login(ml_engineer)
    upload = SimpleUploadedFile("big.csv", b"text,intent\n" + b"some text,x\n" * 500)
    body = client.post("/admin/labeling/utterance/import/", {"file": upload}).content.decode()
    assert "The file is 6,012 bytes; the import limit is 1,000 bytes (IMPORT_MAX_BYTES)" in body
    assert not Utterance.objects.exists()


def test_the_upload_handler_keeps_an_upload_on_disk_and_stops_storing_it_at_the_limit(db, settings):
    """Django's own multipart parser with the configured handlers: the file lands in a temporary
    file, never in memory, and no more than IMPORT_MAX_BYTES of it is written."""
    import os

    from django.core.files.uploadedfile import TemporaryUploadedFile
    from django.test import RequestFactory

    settings.IMPORT_MAX_BYTES = 4096
    content = b"text,intent\n" + b"some text,x\n" * 2000  # 24 kB
    request = RequestFactory().post("/admin/labeling/utterance/import/", {"file": SimpleUploadedFile("big.csv", content)})
    upload = request.FILES["file"]
    assert isinstance(upload, TemporaryUploadedFile)
    assert upload.size == len(content) and os.path.getsize(upload.temporary_file_path()) <= 4096
    small = RequestFactory().post("/admin/labeling/utterance/import/", {"file": SimpleUploadedFile("small.csv", b"text,intent\na,x\n")})
    assert isinstance(small.FILES["file"], TemporaryUploadedFile) and small.FILES["file"].read() == b"text,intent\na,x\n"


# CSV export against formula injection (OWASP "CSV Injection"): a leading =, +, -, @, tab or
# carriage return gets a single quote; the import takes it off again; JSONL stays verbatim.

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+2", "-2+3", "@SUM(A1:A2)", "'=already quoted", "'tis the season"]


def test_the_csv_export_escapes_formulas_and_the_import_restores_them(db, tmp_path, intent_factory):
    news = intent_factory("get_news")
    for text in FORMULAS:
        Utterance.objects.create(text=text, intent=news)
    Utterance.objects.create(text="\tTAB first", intent=news)  # stored before texts were cleaned
    Utterance.objects.create(text="\rCR first", intent=news)
    exported = tmp_path / "out.csv"
    call_command("export_utterances", "--output", str(exported))
    with exported.open(newline="", encoding="utf-8") as handle:
        cells = [row["text"] for row in csv.DictReader(handle)]
    assert sorted(cells) == sorted(["'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1+2", "'-2+3", "'@SUM(A1:A2)",
                                    "''=already quoted", "'tis the season", "'\tTAB first", "'\rCR first"])
    Utterance.objects.all().delete()
    report = services.utterances_import(path=exported, user=None)
    assert report.written and set(Utterance.objects.values_list("text", flat=True)) == {*FORMULAS, "TAB first", "CR first"}


def test_the_jsonl_export_is_verbatim(db, tmp_path, intent_factory):
    news = intent_factory("get_news")
    for text in FORMULAS:
        Utterance.objects.create(text=text, intent=news)
    exported = tmp_path / "out.jsonl"
    call_command("export_utterances", "--format", "jsonl", "--output", str(exported))
    assert sorted(json.loads(line)["text"] for line in exported.read_text().splitlines()) == sorted(FORMULAS)
