"""A probe: does training on the loop's confident traffic (pseudo-labels) close the gap to full data?

    python bench/self_training.py --seeds 0 1 2                      # CLINC150: the shipped order's two rounds, then one self-trained retrain
    python bench/self_training.py --data BANKING77 --seeds 0 1 2 --results var/bench/self_training_banking77.jsonl

It replays the learning loop's shipped chain (seed of 10 per intent, two rounds of 5 per intent in
the queue's order), then takes the traffic the last model would *not* route to review (the
predictions serving calls confident), labels it with the model's own predictions, and retrains the
default recipe on the reviewed labels plus those pseudo-labels: what ``mlcore.train`` does with
unlabeled texts (mlcore.self_training), and what a training run does with the traffic samples
serving sends (TRAFFIC_SAMPLE_RATE). Here the pseudo-labels come from the last round's model, which
is the run's own first pass. Validation decides; test reports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import learning_loop as loop  # noqa: E402
from bench.common import REPO_ROOT  # noqa: E402
from mlcore.config import TrainConfig  # noqa: E402
from mlcore.data import load_labeled_data  # noqa: E402
from mlcore.self_training import pseudo_labels  # noqa: E402


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
            predictor, record = loop.retrain(data, labeled, seed)
            write({**record, "seed": seed, "step": f"round {round_number}"})
        started = time.monotonic()
        # What mlcore.train's second pass does (mlcore.self_training), on the model just trained.
        truth = {e.text: e.intent for e in traffic}
        pseudo = pseudo_labels(predictor, [e.text for e in traffic], labeled_texts=[e.text for e in labeled],
                               limit=int(args.ratio * len(labeled)))
        pseudo_accuracy = sum(truth[p.text] == p.intent for p in pseudo) / max(len(pseudo), 1)
        _, record = loop.retrain(data, labeled + pseudo, seed)
        write({**record, "seed": seed, "step": "self-trained", "reviewed": len(labeled), "pseudo": len(pseudo),
               "pseudo_accuracy": round(pseudo_accuracy, 4), "ratio": args.ratio,
               "wall_seconds": round(time.monotonic() - started, 1)})


def report(path: Path) -> None:
    """Per seed: the last round's model (reviewed labels only) against the self-trained one."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_seed: dict[int, dict[str, dict]] = {}
    for r in records:
        by_seed.setdefault(r["seed"], {})[r["step"]] = r
    rows = [(seed, steps) for seed, steps in sorted(by_seed.items()) if "self-trained" in steps]
    print("| seed | reviewed labels | pseudo-labels (right) | validation: reviewed only → self-trained "
          "| test: reviewed only → self-trained | last round's retrain (s) | self-training (s) |")
    print("| --- |" + " --- |" * 6)
    for seed, steps in rows:
        last, self_trained = steps[f"round {max(int(k.split()[1]) for k in steps if k.startswith('round'))}"], steps["self-trained"]
        print(f"| {seed} | {self_trained['reviewed']:,} | {self_trained['pseudo']:,} ({self_trained['pseudo_accuracy']:.2%}) "
              f"| {last['val_accuracy']:.4f} → {self_trained['val_accuracy']:.4f} | {last['accuracy']:.4f} → {self_trained['accuracy']:.4f} "
              f"| {last['retrain_seconds']:.0f} | {self_trained['wall_seconds']:.0f} |")
    if len(rows) > 1:
        for field, label in (("val_accuracy", "validation"), ("accuracy", "test")):
            before = [steps[f"round {max(int(k.split()[1]) for k in steps if k.startswith('round'))}"][field] for _, steps in rows]
            after = [steps["self-trained"][field] for _, steps in rows]
            print(f"\n{label}: {statistics.mean(before):.4f} ± {statistics.stdev(before):.4f} → "
                  f"{statistics.mean(after):.4f} ± {statistics.stdev(after):.4f} over seeds {[seed for seed, _ in rows]}")


if __name__ == "__main__":
    main()
