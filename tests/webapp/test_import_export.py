import io
import json

import pytest
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
    assert Intent.objects.count() == 150
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
