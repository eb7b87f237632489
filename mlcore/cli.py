"""``python -m mlcore train|evaluate|predict``: bad input ends with one sentence and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from mlcore.config import TrainConfig
from mlcore.errors import MlcoreError

# Each command imports what it runs inside its function, on purpose: torch, transformers and
# datasets take seconds to import, and `--help` or a refused argument should not wait for them.

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlcore", description="Train, evaluate and query intent classifiers.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a classifier and write a .pt artifact")
    train.add_argument("--data", required=True, help="CSV (text,intent), JSONL or CLINC150 JSON")
    train.add_argument("--out", required=True, help="where to write the .pt artifact")
    add_option_arguments(train, "cli")
    train.add_argument("--intents", help="comma-separated intents to keep (a slice of a larger set)")
    train.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")

    evaluate = commands.add_parser("evaluate", help="score an artifact on labeled data")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--data", required=True, help="CSV/JSONL (every row) or CLINC150 JSON (test + oos_test)")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"), help="CLINC150 split to score")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as one JSON object")

    predict = commands.add_parser("predict", help="classify texts and print the distribution")
    predict.add_argument("--model", required=True)
    predict.add_argument("--top", type=int, default=5, help="how many intents to print per text")
    predict.add_argument("--json", action="store_true")
    predict.add_argument("texts", nargs="+")
    export = commands.add_parser("export-onnx", help="write the ONNX file that serving runs (no torch needed there)")
    export.add_argument("--model", required=True, help="the .pt artifact")
    export.add_argument("--out", required=True, help="where to write the .onnx file")
    return parser


def add_option_arguments(parser: argparse.ArgumentParser, scope: str) -> None:
    """One argument per training option that ``scope`` may set, as TrainConfig declares it: flag,
    type, choices, default and help. TrainConfig checks the values (an error exits 2), so the bounds
    are left to it. Also the arguments of ``manage.py train`` (scope "launch")."""
    for declared in TrainConfig.options(scope):
        text = declared.help.replace("%", "%%")  # argparse formats help with %
        if declared.type is bool:
            on = bool(declared.default)
            parser.add_argument(declared.flag, dest=declared.name, action="store_false" if on else "store_true",
                                default=declared.default, help=f"{text} On by default; this flag turns it off." if on else text)
        else:
            parser.add_argument(declared.flag, dest=declared.name, type=declared.type, choices=declared.choices or None,
                                default=declared.default, help=text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "evaluate": _evaluate, "predict": _predict, "export-onnx": _export}[args.command](args)
    except MlcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mlcore.data import load_labeled_data, select_intents
    from mlcore.train import train

    config = TrainConfig(**{name: getattr(args, name) for name in TrainConfig.option_names("cli")})
    data = load_labeled_data(args.data)
    if args.intents:
        data = select_intents(data, [name.strip() for name in args.intents.split(",") if name.strip()])
    bar = tqdm(total=0, unit="step", desc="training", disable=args.json or not sys.stderr.isatty() and not os.environ.get("MLCORE_PROGRESS"))

    def show(progress) -> None:
        bar.total = progress.total_steps
        bar.n = progress.step
        if progress.metrics:
            bar.set_postfix(epoch=f"{progress.epoch:.2f}", val_acc=f"{progress.metrics['accuracy']:.3f}", refresh=False)
        bar.refresh()

    result = train(config, data, progress=show)
    bar.close()
    sha256 = result.save(args.out)
    if args.json:
        print(json.dumps({"artifact": str(args.out), "sha256": sha256, "metrics": result.metrics}))
    else:
        print(f"artifact: {args.out}\nsha256:   {sha256}")
        training = result.metrics["training"]
        print(f"device {training['device']}, {training['train_examples']} training examples, {training['epochs']} epochs, "
              f"best epoch {training['best_epoch']}, {training['train_seconds']:.1f}s, {training['examples_per_second']:.1f} examples/s")
        print(_metrics_table({name: result.metrics[name] for name in ("validation", "test") if name in result.metrics}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mlcore.data import load_labeled_data
    from mlcore.predictor import Predictor
    from mlcore.scoring import evaluate_predictor

    predictor = Predictor.from_file(args.model)
    data = load_labeled_data(args.data)
    is_clinc = Path(args.data).suffix.lower() == ".json"
    if is_clinc:
        examples = getattr(data, args.split)
        oos = getattr(data, "oos_" + args.split)
    else:
        examples, oos = data.train, data.oos_train
    report = evaluate_predictor(predictor, examples, oos)
    if args.json:
        print(json.dumps(report))
    else:
        print(_metrics_table({f"{Path(args.data).name}" + (f" ({args.split})" if is_clinc else ""): report}))
        worst = sorted(report["per_intent"], key=lambda row: row["f1"])[:5]
        print("weakest intents: " + ", ".join(f"{row['intent']} (F1 {row['f1']:.2f})" for row in worst))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mlcore.predictor import Predictor

    predictor = Predictor.from_file(args.model)
    predictions = predictor.predict(args.texts)
    if args.json:
        print(json.dumps([{"text": t, **p.to_dict()} for t, p in zip(args.texts, predictions)]))
        return 0
    rule, threshold = predictor.rule()
    for text, prediction in zip(args.texts, predictions):
        figure = "in-scope score %.3f" % prediction.in_scope_score if rule == "in_scope_score" else "confidence"
        flag = f"  (low confidence: {figure} below {threshold:.2f})" if prediction.low_confidence else ""
        print(f"{text!r} -> {prediction.intent} {prediction.confidence:.3f}{flag}")
        for intent, probability in prediction.distribution[: args.top]:
            print(f"    {probability:7.3f}  {intent}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from mlcore.onnx_export import export_onnx

    path = export_onnx(args.model, args.out)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def _metrics_table(reports: dict[str, dict]) -> str:
    rows = [
        ("examples", "examples", "{:d}"), ("accuracy", "accuracy", "{:.4f}"), ("macro-F1", "macro_f1", "{:.4f}"),
        ("ECE before calibration", "ece_uncalibrated", "{:.4f}"), ("ECE after calibration", "ece", "{:.4f}"),
        ("temperature", "temperature", "{:.3f}"), ("review rule", "rule", "{}"), ("threshold", "threshold", "{:.2f}"),
        ("in-scope sent to review", "in_scope_review_rate", "{:.4f}"),
        ("out-of-scope examples", "oos_examples", "{:d}"), ("out-of-scope recall", "oos_recall", "{:.4f}"),
        ("out-of-scope AUROC", "oos_auroc", "{:.4f}"),
    ]
    names = list(reports)
    width = max(len(label) for label, _, _ in rows) + 2
    lines = ["".ljust(width) + "".join(name.rjust(max(12, len(name) + 2)) for name in names)]
    for label, key, fmt in rows:
        if not any(key in report and report[key] is not None for report in reports.values()):
            continue
        cells = []
        for name in names:
            value = reports[name].get(key)
            cells.append((fmt.format(value) if value is not None else "-").rjust(max(12, len(name) + 2)))
        lines.append(label.ljust(width) + "".join(cells))
    return "\n".join(lines)
