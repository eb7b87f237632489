"""A probe: does training on the loop's confident traffic (pseudo-labels) close the gap to full data?

    python -m bench.self_training --seeds 0 1 2                      # CLINC150: the shipped order's two rounds, then one self-trained retrain
    python -m bench.self_training --data BANKING77 --seeds 0 1 2 --results bench/results/self_training/banking77.jsonl

It replays the learning loop's shipped chain (a seed of 10 labels per intent, then rounds of 5 per
intent in the queue's order), and gives the last round's run the traffic not labeled yet as
unlabeled texts, as a training run is given serving's traffic samples (TRAFFIC_SAMPLE_RATE).
``mlcore.train`` then trains on the reviewed labels (its first pass: the model the loop alone would
have), labels the traffic that model answers with confidence (mlcore.self_training), trains again
on both, and keeps the second model if it validates as well. Both passes' validation and test
figures are recorded. Validation decides; test reports.
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

from bench import learning_loop as loop
from bench.common import RESULTS, argument_parser, keep_report
from mlcore.config import TrainConfig
from mlcore.data import load_labeled_data


def main() -> None:
    parser = argument_parser("self_training", __doc__, "section 11 (the self-training subsections)")
    parser.add_argument("--data", default="CLINC150", help="CLINC150, BANKING77 (python -m bench.banking77), or a labeled file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--strategy", default="confidence")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ratio", type=float, default=TrainConfig().pseudo_label_ratio,
                        help="at most this many pseudo-labels per reviewed label (TrainConfig.pseudo_label_ratio)")
    parser.add_argument("--samples", type=int, default=None,
                        help="give the run a random N of the traffic not labeled (serving's random share), not all of it")
    parser.add_argument("--results", default=str(RESULTS / "self_training" / "self_training.jsonl"),
                        help="the JSON-lines file of the records (default: bench/results/self_training/self_training.jsonl)")
    parser.add_argument("--report", action="store_true", help="only print the table from the results so far")
    args = parser.parse_args()
    keep_report("self_training", args.output)
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
            samples = traffic_sample(traffic, args.samples, seed) if loop.SELF_TRAIN else traffic
            predictor, record = loop.retrain(data, labeled, seed, samples)
            write({**record, "seed": seed, "step": "self-trained" if loop.SELF_TRAIN else f"round {round_number}"})
        loop.SELF_TRAIN = False


def traffic_sample(traffic: list, size: int | None, seed: int) -> list:
    """What serving's TRAFFIC_SAMPLE_RATE would have sent: a random share of the traffic, in its order."""
    if size is None or size >= len(traffic):
        return traffic
    return [traffic[i] for i in sorted(random.Random(seed).sample(range(len(traffic)), size))]


def report(path: Path) -> None:
    """Per seed: the reviewed labels alone (the run's first pass) against the self-trained model."""
    rows = []
    for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip()):
        if r["step"] != "self-trained":
            continue
        st = r["self_training"]
        before, after = st["reviewed_only"], st.get("self_trained", st["reviewed_only"])
        rows.append((r["seed"], r["labels"], st["unlabeled_texts"], st["pseudo_labels"], st["kept"],
                     (before["validation_accuracy"], after["validation_accuracy"]), (before["test_accuracy"], after["test_accuracy"]),
                     (before["validation_oos_auroc"], after["validation_oos_auroc"]), r["retrain_seconds"]))
    print("| seed | reviewed labels | traffic given | pseudo-labels | kept | validation: reviewed only → self-trained "
          "| test: reviewed only → self-trained | validation OOS AUROC | both passes (s) |")
    print("| --- |" + " --- |" * 8)
    for seed, labels, given, pseudo, kept, val, test, auroc, seconds in sorted(rows):
        auroc_text = f"{auroc[0]:.4f} → {auroc[1]:.4f}" if auroc[0] is not None else "none (no out-of-scope texts)"
        print(f"| {seed} | {labels:,} | {given:,} | {pseudo:,} | {kept.replace('_', ' ')} | {val[0]:.4f} → {val[1]:.4f} "
              f"| {test[0]:.4f} → {test[1]:.4f} | {auroc_text} | {seconds:.0f} |")
    if len(rows) > 1:
        for index, label in ((5, "validation"), (6, "test")):
            before, after = [row[index][0] for row in rows], [row[index][1] for row in rows]
            print(f"\n{label}: {statistics.mean(before):.4f} ± {statistics.stdev(before):.4f} → "
                  f"{statistics.mean(after):.4f} ± {statistics.stdev(after):.4f} over seeds {sorted(row[0] for row in rows)}")


if __name__ == "__main__":
    main()
