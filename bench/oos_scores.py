"""Out-of-scope scores on CLINC150 beyond the maximum calibrated probability (issue 15, first step).

    python -m bench.oos_scores [--model var/models/clinc_full.pt]

The model is the default recipe's on all of CLINC150 (make it with `python -m bench.accuracy --retrain`).
Every candidate of mlcore/ood.py is fitted on the training split, standardised on the in-scope
validation texts where combined, and given the threshold the training run's rule picks
(mlcore.ood.balanced_threshold) on the validation texts with the out-of-scope rows the run uses to
tune it (oos_train and oos_val, 200 texts). The candidate kept is the one with the best validation
AUROC; candidates within 0.0005 of it count as tied, and the tie goes to the one with the better
validation objective. The test split (4,500 in-scope, 1,000 out-of-scope) is scored once per
candidate, after the choice.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.common import CLINC_FULL, argument_parser, header, keep_report
from bench.common import REPO_ROOT as ROOT

TIE = 0.0005


def embeddings_and_logits(predictor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from mlcore.prediction import batched_rows

    width = predictor.model.encoder.config.hidden_size

    def run(batch: list[str]) -> np.ndarray:
        inputs = {name: torch.from_numpy(ids) for name, ids in predictor.encode(batch).items()}
        with torch.inference_mode():
            embedded = predictor.model.embed(**inputs)
            return torch.cat([embedded, predictor.model.classifier(embedded)], dim=1).float().numpy()

    rows = batched_rows(texts, 128, width + len(predictor.labels), run)
    return rows[:, :width], rows[:, width:]


def main() -> None:
    parser = argument_parser("oos_scores", __doc__, "section 13")
    parser.add_argument("--model", default=str(ROOT / "var/models/clinc_full.pt"))
    args = parser.parse_args()
    if not Path(args.model).exists():
        raise SystemExit(f"No model at {args.model}: make it with `python -m bench.accuracy --retrain`.")
    keep_report("oos_scores", args.output)
    from mlcore.data import load_labeled_data
    from mlcore.metrics import auroc, softmax
    from mlcore.ood import MahalanobisScorer, Standardiser, balanced_threshold, combined, energy, max_logit, nearest_neighbour
    from mlcore.predictor import Predictor

    predictor = Predictor.from_file(args.model)
    data = load_labeled_data(CLINC_FULL)
    label_ids = {name: i for i, name in enumerate(predictor.labels)}
    started = time.perf_counter()
    splits = {name: embeddings_and_logits(predictor, [e.text for e in examples]) for name, examples in
              (("train", data.train), ("val", data.val), ("val_oos", data.oos_train + data.oos_val), ("test", data.test), ("test_oos", data.oos_test))}
    embed_seconds = time.perf_counter() - started
    train_embeddings, _ = splits["train"]
    mahalanobis = MahalanobisScorer.fit(train_embeddings, [label_ids[e.intent] for e in data.train])

    singles = {
        "max calibrated probability (today)": lambda e, l: softmax(l, predictor.temperature).max(axis=1),
        "max logit": lambda e, l: max_logit(l),
        "energy": lambda e, l: energy(l),
        "Mahalanobis (shared covariance, normalised embeddings)": lambda e, l: mahalanobis.score(e),
        "nearest neighbour, cosine (k = 1)": lambda e, l: nearest_neighbour(e, train_embeddings, 1),
        "nearest neighbour, cosine (k = 10)": lambda e, l: nearest_neighbour(e, train_embeddings, 10),
    }
    scores = {name: {split: score(*splits[split]) for split in ("val", "val_oos", "test", "test_oos")} for name, score in singles.items()}
    for first, second in (("max calibrated probability (today)", "Mahalanobis (shared covariance, normalised embeddings)"),
                          ("max logit", "Mahalanobis (shared covariance, normalised embeddings)"),
                          ("energy", "Mahalanobis (shared covariance, normalised embeddings)"),
                          ("max calibrated probability (today)", "nearest neighbour, cosine (k = 1)")):
        parts = [Standardiser.fit(scores[first]["val"]), Standardiser.fit(scores[second]["val"])]
        scores[f"{first.split(' (')[0]} + {second.split(' (')[0].split(',')[0]}"] = {
            split: combined([scores[first][split], scores[second][split]], parts) for split in ("val", "val_oos", "test", "test_oos")}

    val_correct = splits["val"][1].argmax(axis=1) == np.array([label_ids[e.intent] for e in data.val])
    rows = {}
    for name, s in scores.items():
        threshold = balanced_threshold(s["val"], val_correct, s["val_oos"])
        objective = 0.5 * float(((s["val"] >= threshold) & val_correct).mean()) + 0.5 * float((s["val_oos"] < threshold).mean())
        rows[name] = {"val_auroc": auroc(s["val"], s["val_oos"]), "val_objective": objective,
                      "val_recall": float((s["val_oos"] < threshold).mean()), "val_review": float((s["val"] < threshold).mean())}
    best_auroc = max(r["val_auroc"] for r in rows.values())
    chosen = max((name for name, r in rows.items() if r["val_auroc"] >= best_auroc - TIE), key=lambda name: rows[name]["val_objective"])
    for name, s in scores.items():  # the test split, once per candidate, after the choice
        threshold = balanced_threshold(s["val"], val_correct, s["val_oos"])
        rows[name].update(test_auroc=auroc(s["test"], s["test_oos"]), test_recall=float((s["test_oos"] < threshold).mean()),
                          test_review=float((s["test"] < threshold).mean()))
    costs = score_costs(singles, splits["test"])

    print(header("Out-of-scope scores (CLINC150)"))
    print(f"The model: {args.model} (test in-scope accuracy {float((splits['test'][1].argmax(axis=1) == np.array([label_ids[e.intent] for e in data.test])).mean()):.4f}). "
          f"Embedding every split took {embed_seconds:.0f} s. Chosen on validation: **{chosen}**.\n")
    print("| score | val AUROC | val objective | val OOS recall | val in-scope review | test AUROC | test OOS recall | test in-scope review |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        mark = "**" if name == chosen else ""
        print(f"| {mark}{name}{mark} | {r['val_auroc']:.4f} | {r['val_objective']:.4f} | {r['val_recall']:.3f} | {r['val_review']:.3f} "
              f"| {r['test_auroc']:.4f} | {r['test_recall']:.3f} | {r['test_review']:.3f} |")
    print("\n| score, one text, after the model call | microseconds |\n| --- | --- |")
    for name, micros in costs.items():
        print(f"| {name} | {micros:.0f} |")


def score_costs(singles: dict, test: tuple[np.ndarray, np.ndarray], repeats: int = 200) -> dict[str, float]:
    """What each score adds to one request once the model has answered (numpy, this process)."""
    embedding, logits = test[0][:1], test[1][:1]
    costs = {}
    for name, score in singles.items():
        score(embedding, logits)
        started = time.perf_counter()
        for _ in range(repeats):
            score(embedding, logits)
        costs[name] = (time.perf_counter() - started) / repeats * 1e6
    return costs


if __name__ == "__main__":
    main()
