"""A probe: does training on the loop's confident traffic (pseudo-labels) close the gap to full data?

    python bench/self_training.py --seeds 0 1 2                      # CLINC150: the shipped order's two rounds, then one self-trained retrain
    python bench/self_training.py --data BANKING77 --seeds 0 1 2 --results var/bench/self_training_banking77.jsonl

It replays the learning loop's shipped chain (a seed of 10 labels per intent, then rounds of 5 per
intent in the queue's order), and gives the last round's run the traffic not labeled yet as
unlabeled texts, as a training run is given serving's traffic samples (TRAFFIC_SAMPLE_RATE).
``mlcore.train`` then trains on the reviewed labels (its first pass: the model the loop alone would
have), labels the traffic that model answers with confidence (mlcore.self_training), trains again
on both, and keeps the second model if it validates as well. Both passes' validation and test
figures are recorded. Validation decides; test reports.

Seeds 0 and 1 of CLINC150 were run by this script's first version, which trained the two passes as
two separate calls and also counted how many pseudo-labels were right (``pseudo_accuracy``); the
report reads both kinds of record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import learning_loop as loop  # noqa: E402
from bench.common import REPO_ROOT  # noqa: E402
from mlcore.config import TrainConfig  # noqa: E402
from mlcore.data import load_labeled_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="CLINC150", help="CLINC150, BANKING77 (bench/banking77.py), or a labeled file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--strategy", default="confidence")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ratio", type=float, default=TrainConfig().pseudo_label_ratio,
                        help="at most this many pseudo-labels per reviewed label (TrainConfig.pseudo_label_ratio)")
    parser.add_argument("--results", default=str(REPO_ROOT / "var" / "bench" / "self_training.jsonl"))
    parser.add_argument("--report", action="store_true", help="only print the table from the results so far")
    args = parser.parse_args()
    if args.ratio != TrainConfig().pseudo_label_ratio:
        loop.RECIPE["pseudo_label_ratio"] = args.ratio
    if args.report:
        report(Path(args.results))
        return
    data = load_labeled_data(loop.data_path(args.data))
    name = Path(args.data).stem
    budget = 5 * len(data.intents)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)

    def write(record: dict) -> None:
        record["data"] = name
        print(json.dumps(record), flush=True)
        with results.open("a") as out:
            out.write(json.dumps(record) + "\n")

    for seed in args.seeds:
        labeled, traffic = loop.seed_split(data, 10, seed)
        predictor, record = loop.retrain(data, labeled, seed)
        write({**record, "seed": seed, "step": "seed"})
        for round_number in range(1, args.rounds + 1):
            chosen, _ = loop.pick(args.strategy, predictor, traffic, budget, seed * 1000 + round_number)
            picked = set(chosen)
            labeled += [traffic[i] for i in chosen]
            traffic = [e for i, e in enumerate(traffic) if i not in picked]
            # The last round's run is given the traffic not labeled yet, as a training run is given
            # serving's samples: mlcore.train trains on the reviewed labels (its first pass, the model
            # the loop alone would have), then self-trains and keeps the better on validation.
            loop.SELF_TRAIN = round_number == args.rounds
            predictor, record = loop.retrain(data, labeled, seed, traffic)
            write({**record, "seed": seed, "step": "self-trained" if loop.SELF_TRAIN else f"round {round_number}"})
        loop.SELF_TRAIN = False


def report(path: Path) -> None:
    """Per seed: the reviewed labels alone (the first pass) against the self-trained model."""
    rows = []
    for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip()):
        if r["step"] == "self-trained" and "self_training" in r:  # one run, both passes (mlcore.train)
            st = r["self_training"]
            before, after = st["reviewed_only"], st.get("self_trained", st["reviewed_only"])
            rows.append((r["seed"], r["labels"], st["pseudo_labels"], None, st["kept"],
                         (before["validation_accuracy"], after["validation_accuracy"]), (before["test_accuracy"], after["test_accuracy"]),
                         (before["validation_oos_auroc"], after["validation_oos_auroc"]), r["retrain_seconds"]))
        elif r["step"] == "self-trained":  # the first version: the last round's record is the first pass
            last = max((x for x in records_of(path) if x["seed"] == r["seed"] and x["step"].startswith("round")), key=lambda x: x["labels"])
            rows.append((r["seed"], r["reviewed"], r["pseudo"], r["pseudo_accuracy"], "not applied",
                         (last["val_accuracy"], r["val_accuracy"]), (last["accuracy"], r["accuracy"]), (None, None),
                         last["retrain_seconds"] + r["wall_seconds"]))
    print("| seed | reviewed labels | pseudo-labels (right) | kept | validation: reviewed only → self-trained "
          "| test: reviewed only → self-trained | validation OOS AUROC | both passes (s) |")
    print("| --- |" + " --- |" * 7)
    for seed, labels, pseudo, right, kept, val, test, auroc, seconds in sorted(rows):
        right_text = f" ({right:.2%})" if right is not None else ""
        auroc_text = f"{auroc[0]:.4f} → {auroc[1]:.4f}" if auroc[0] is not None else "not recorded"
        print(f"| {seed} | {labels:,} | {pseudo:,}{right_text} | {kept.replace('_', ' ')} | {val[0]:.4f} → {val[1]:.4f} "
              f"| {test[0]:.4f} → {test[1]:.4f} | {auroc_text} | {seconds:.0f} |")
    if len(rows) > 1:
        for index, label in ((5, "validation"), (6, "test")):
            before, after = [row[index][0] for row in rows], [row[index][1] for row in rows]
            print(f"\n{label}: {statistics.mean(before):.4f} ± {statistics.stdev(before):.4f} → "
                  f"{statistics.mean(after):.4f} ± {statistics.stdev(after):.4f} over seeds {sorted(row[0] for row in rows)}")


def records_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

if __name__ == "__main__":
    main()
