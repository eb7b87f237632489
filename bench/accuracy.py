"""Accuracy on CLINC150 (data_full.json): the default encoder beside the published references.

    python -m bench.accuracy [--model var/models/clinc_full.pt] [--retrain] [--oos-mode threshold|class]

Fine-tunes the default encoder with mlcore's default recipe on CLINC150's train split (unless the
artifact at --model exists and --retrain is not given: then its recorded training figures are
shown), and scores it on the test split: 4,500 in-scope and 1,000 out-of-scope queries.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from bench.common import CLINC_FULL, argument_parser, header, keep_report
from bench.common import REPO_ROOT as ROOT

# The published figures the issue names: bert-tiny's in-scope accuracy, and BERT-large's from the
# CLINC150 paper (Larson et al., 2019), whose out-of-scope recall is without and with a softmax threshold.
REFERENCES = {"accuracy": ("0.945", "0.969"), "oos_recall": ("-", "0.403 (0.523 with a softmax threshold)")}


def train_model(path: Path, oos_mode: str) -> dict:
    from mlcore.config import TrainConfig
    from mlcore.data import load_labeled_data
    from mlcore.train import train

    started = time.perf_counter()
    result = train(TrainConfig(oos_mode=oos_mode), load_labeled_data(CLINC_FULL))
    result.save(path)
    # Peak RSS of this process: training is what it did until now.
    return {"wall_seconds": time.perf_counter() - started, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argument_parser("accuracy", __doc__, "section 1 (also run in section 14; its model is the one sections 4, 5, 13 and 15 read)")
    parser.add_argument("--model", default=str(ROOT / "var/models/clinc_full.pt"))
    parser.add_argument("--retrain", action="store_true", help="train anew even if --model exists")
    parser.add_argument("--oos-mode", choices=("threshold", "class"), default="threshold")
    args = parser.parse_args()
    keep_report("accuracy", args.output)
    model = Path(args.model)
    fresh = None
    if args.retrain or not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        fresh = train_model(model, args.oos_mode)

    from mlcore.data import load_labeled_data
    from mlcore.predictor import Predictor
    from mlcore.scoring import evaluate_predictor

    predictor = Predictor.from_file(model)
    data = load_labeled_data(CLINC_FULL)
    report = evaluate_predictor(predictor, data.test, data.oos_test)
    training = predictor.metrics.get("training", {})

    print(header("Accuracy on CLINC150"))
    artifact = predictor.artifact
    print(f"model: {model} (base {artifact['base_model']}, out-of-scope mode {artifact['train_config'].get('oos_mode')}, "
          f"version {predictor.version})")
    print(f"training: {training.get('train_examples')} examples, {training.get('epochs')} epochs on {training.get('device')}, "
          f"{training.get('train_seconds', 0):.0f} s, {training.get('examples_per_second', 0):.1f} examples/s"
          + (f"; whole training call {fresh['wall_seconds']:.0f} s, peak RSS {fresh['peak_rss_gb']:.2f} GB" if fresh else
             " (recorded in the artifact when it was trained)") + "\n")
    # The review rule the model serves with: its in-scope score (the default recipe) or the probability.
    oos_score = artifact["train_config"].get("oos_score", "probability").replace("+", " + ")
    score = f"in-scope score ({oos_score})" if report.get("rule") == "in_scope_score" else "max probability"
    rows = [
        ("in-scope accuracy", report["accuracy"], *REFERENCES["accuracy"]),
        ("macro-F1", report["macro_f1"]),
        (f"out-of-scope recall at the recommended threshold ({score} < {report['threshold']:.2f})", report["oos_recall"], *REFERENCES["oos_recall"]),
        ("in-scope queries below the threshold (sent to review)", report["in_scope_review_rate"]),
        (f"OOS AUROC ({score}, in-scope against out-of-scope)", report["oos_auroc"]),
    ]
    if "confidence_rule" in report:
        by_probability = report["confidence_rule"]
        rows += [
            (f"the probability rule beside it: out-of-scope recall (max probability < {by_probability['threshold']:.2f})", by_probability["oos_recall"]),
            ("the probability rule: in-scope queries sent to review", by_probability["in_scope_review_rate"]),
            ("the probability rule: OOS AUROC (max probability)", by_probability["oos_auroc"]),
        ]
    rows += [
        ("ECE before temperature scaling", report["ece_uncalibrated"]),
        (f"ECE after temperature scaling (T = {report['temperature']:.3f})", report["ece"]),
    ]
    print("| figure (test split) | ours | bert-tiny (published) | BERT-large (published) |\n| --- | --- | --- | --- |")
    for name, ours, *published in rows:
        tiny, large = published or ("-", "-")
        print(f"| {name} | {ours:.4f} | {tiny} | {large} |")


if __name__ == "__main__":
    main()
