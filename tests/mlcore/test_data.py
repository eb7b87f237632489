import json

import pytest

from mlcore.data import (
    Example, LabeledData, dataset_fingerprint, load_labeled_data, normalize_text, select_intents, stratified_split,
)
from mlcore.errors import DataError
from tests.factories import write_csv, write_jsonl


def test_csv_is_read_normalized_and_deduplicated(tmp_path):
    path = write_csv(tmp_path / "d.csv", [
        ("  show   me\tthe news ", "get_news"), ("show me the news", "get_news"), ("play jazz", "play_music"), ("", "get_news"),
    ])
    data = load_labeled_data(path)
    assert data.train == [Example("show me the news", "get_news"), Example("play jazz", "play_music")]


def test_jsonl_is_read(tmp_path):
    data = load_labeled_data(write_jsonl(tmp_path / "d.jsonl", [("hi there", "greet"), ("bye", "leave")]))
    assert data.intents == ["greet", "leave"]


def test_conflicting_labels_are_listed(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("play the news", "get_news"), ("play  the news", "play_music"), ("ok", "x")])
    with pytest.raises(DataError, match=r"1 text\(s\).*'play the news' -> get_news, play_music"):
        load_labeled_data(path)


def test_clinc_layout_keeps_its_splits_and_oos(tmp_path):
    document = {
        "train": [["a b", "x"], ["c d", "y"]], "val": [["e f", "x"]], "test": [["g h", "y"]],
        "oos_train": [["what is love", "oos"]], "oos_val": [], "oos_test": [["who am i", "oos"]],
    }
    path = tmp_path / "clinc.json"
    path.write_text(json.dumps(document))
    data = load_labeled_data(path)
    assert [e.text for e in data.val] == ["e f"]
    assert [e.text for e in data.oos_train] == ["what is love"]
    assert [e.text for e in data.oos_test] == ["who am i"]


def test_oos_rows_in_a_csv_become_out_of_scope(tmp_path):
    data = load_labeled_data(write_csv(tmp_path / "d.csv", [("a", "x"), ("b", "y"), ("c", "oos")]))
    assert data.intents == ["x", "y"] and [e.text for e in data.oos_train] == ["c"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.csv", None, "not found"),
        ("d.txt", "text,intent\na,b\n", "Unknown data format"),
        ("d.csv", "utterance,label\na,b\n", "lacks the column"),
        ("d.csv", "text,intent\n", "no labeled examples"),
        ("d.jsonl", "{not json}\n", "line 1 is not valid JSON"),
        ("d.json", '{"val": []}', "not in the CLINC150 layout"),
    ],
)
def test_bad_files_give_one_clear_sentence(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_labeled_data(path)


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("text,intent\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_labeled_data(path)


def test_stratified_split_is_fixed_by_seed_and_keeps_every_intent():
    examples = [Example(f"text {i} {k}", k) for k in ("a", "b", "c") for i in range(20)] + [Example("lonely", "d")]
    train_1, val_1 = stratified_split(examples, fraction=0.25, seed=7)
    train_2, val_2 = stratified_split(list(reversed(examples)), fraction=0.25, seed=7)
    assert (train_1, val_1) == (train_2, val_2)
    assert sorted(e.intent for e in val_1).count("a") == 5
    assert Example("lonely", "d") in train_1 and all(e.intent != "d" for e in val_1)
    assert set(train_1).isdisjoint(val_1)


def test_fingerprint_ignores_order_and_sees_labels():
    a = [Example("x", "one"), Example("y", "two")]
    assert dataset_fingerprint(a) == dataset_fingerprint(reversed(a))
    assert dataset_fingerprint(a) != dataset_fingerprint([Example("x", "two"), Example("y", "two")])


def test_normalize_and_select():
    assert normalize_text(" a \n b ") == "a b"
    data = LabeledData(train=[Example("a", "x"), Example("b", "y")], test=[Example("c", "y")])
    assert [e.intent for e in select_intents(data, ["y"]).train] == ["y"]
