"""The learning loop, simulated: which review strategy buys the most accuracy per label?

    python -m bench.learning_loop                          # CLINC150, K=10, rounds of 5 per intent
    python -m bench.learning_loop --report --plot docs/learning_loop_clinc150.png   # the tables, and the plot BENCHMARKS.md shows
    python -m bench.learning_loop --data BANKING77 --rounds 2 --full   # the second data set
    python -m bench.learning_loop --stability 10 20 40 80  # the recipe as labels grow (CLINC150, one seed)
    python -m bench.learning_loop --full --strategies --seeds 0 1 --results bench/results/learning_loop/full.jsonl   # only full-data references
    python -m bench.learning_loop --self-train --results bench/results/learning_loop/self_train.jsonl   # every retrain self-trains

A seed of K labels per intent trains the first model; the rest of the train split is the traffic.
Each round the model scores the traffic, the serving rule routes the unsure predictions to the
queue (as serving's REVIEW_ROUTING does: --route, by default "either" the in-scope score under its
threshold or the probability under the model's probability threshold), a simulated reviewer labels the first
N items in the queue's order with their true intents, the default recipe retrains on everything
labeled so far (with --self-train, also given the traffic not labeled yet, as the unlabeled texts a
run self-trains on: mlcore.self_training), and the new model is scored on the test split. ``random`` skips the queue: N items
of all the traffic, picked at random, as a user labeling by hand would.

Every strategy of one seed starts from the same seed labels and the same first model. Results go
to a JSON-lines file as they come (``--results``, by default in bench/results/learning_loop/), so a
long run can be read, or resumed, at any time: a (seed, strategy) pair already there is not run
again.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.common import CLINC_FULL, RESULTS, argument_parser, header, keep_report
from mlcore.config import TrainConfig
from mlcore.data import Example, LabeledData, load_labeled_data
from mlcore.review_strategy import STRATEGIES, review_order, routed, top_two

if TYPE_CHECKING:
    from mlcore.predictor import Predictor

DEFAULT_RESULTS = RESULTS / "learning_loop" / "learning_loop.jsonl"
ALL_STRATEGIES = ("random", *STRATEGIES)


def data_path(name: str) -> Path:
    if name == "CLINC150":
        return CLINC_FULL
    if name == "BANKING77":
        from bench.banking77 import build

        return build()
    return Path(name)


def seed_split(data: LabeledData, per_intent: int, seed: int) -> tuple[list[Example], list[Example]]:
    """K labels per intent, drawn with ``seed``; the rest of the train split is the traffic."""
    rng = random.Random(seed)
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in data.train:
        by_intent[example.intent].append(example)
    labeled, traffic = [], []
    for intent in sorted(by_intent):
        rows = by_intent[intent][:]
        rng.shuffle(rows)
        labeled += rows[:per_intent]
        traffic += rows[per_intent:]
    rng.shuffle(traffic)
    return labeled, traffic


# What routes traffic to the queue (serving's REVIEW_ROUTING): "either" sends a prediction when the
# model's in-scope score is under its threshold or its calibrated probability is under the model's
# probability threshold; "rule" only by the serving rule (the in-scope score where the model has it,
# as after issue 15); "probability" only by the probability (the rule before issue 15). A model
# without the in-scope score routes by the probability under all three.
ROUTE = "either"
# TrainConfig fields to change from the defaults (--set), to try a recipe on the loop's data.
RECIPE: dict[str, object] = {}


# --self-train: every retrain is also given the traffic not labeled yet, as the unlabeled texts
# mlcore.train self-trains on (mlcore.self_training).
SELF_TRAIN = False


def retrain(data: LabeledData, labeled: list[Example], seed: int, unlabeled: list[Example] = ()) -> tuple[Predictor, dict]:
    import torch

    from mlcore.predictor import Predictor
    from mlcore.train import train

    started = time.monotonic()
    texts = [e.text for e in unlabeled] if SELF_TRAIN else []
    result = train(TrainConfig(**{**RECIPE, "seed": seed}), replace(data, train=labeled, oos_test=[], unlabeled=texts))
    wall = time.monotonic() - started
    predictor = Predictor(result.to_artifact())
    test, training = result.metrics["test"], result.metrics["training"]
    return predictor, {
        "labels": len(labeled), "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
        "val_accuracy": result.metrics["validation"]["accuracy"], "val_oos_auroc": result.metrics["validation"].get("oos_auroc"),
        "epochs": training["epochs"],
        "threshold": result.threshold, "train_seconds": training["train_seconds"],
        "retrain_seconds": round(wall, 1), "threads": torch.get_num_threads(),  # float sums, so figures, can differ with it
        **({"recipe": RECIPE} if RECIPE else {}),
        **({"self_training": result.metrics["self_training"]} if "self_training" in result.metrics else {}),
    }


def recipe_value(text: str) -> tuple[str, object]:
    """KEY=VALUE for --set: the value as JSON where it parses (numbers, null), else as a string."""
    key, _, value = text.partition("=")
    if key not in TrainConfig.__dataclass_fields__ or key == "seed":
        raise argparse.ArgumentTypeError(f"{key!r} is not a TrainConfig field the loop can set")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def pick(strategy: str, predictor: Predictor, traffic: list[Example], budget: int, seed: int) -> tuple[list[int], int]:
    """The traffic positions a reviewer labels this round, and how many items the queue held."""
    if strategy == "random":
        return random.Random(seed).sample(range(len(traffic)), min(budget, len(traffic))), len(traffic)
    probabilities, scores = predictor.answer([e.text for e in traffic], batch_size=256)
    best, confidence, margin = top_two(probabilities)
    unsure = routed(probabilities, scores, threshold=predictor.threshold, route=ROUTE,
                    score_threshold=predictor.own_threshold("in_scope_score") if scores is not None else None)
    queued = np.flatnonzero(unsure)
    predicted = [predictor.labels[i] for i in best[queued]]
    order = review_order(confidence=confidence[queued], margin=margin[queued], predicted=predicted, strategy=strategy)
    return [int(queued[i]) for i in order[:budget]], len(queued)


def run_chain(data, labeled, traffic, first, *, strategy, seed, rounds, budget, write) -> None:
    predictor, labeled, traffic = first, list(labeled), list(traffic)
    for round_number in range(1, rounds + 1):
        chosen, queue_size = pick(strategy, predictor, traffic, budget, seed * 1000 + round_number)
        picked = set(chosen)
        intents_covered = len({traffic[i].intent for i in chosen})
        labeled += [traffic[i] for i in chosen]
        traffic = [e for i, e in enumerate(traffic) if i not in picked]
        predictor, record = retrain(data, labeled, seed, traffic)
        record.update(seed=seed, strategy=strategy, round=round_number, queue_size=queue_size, intents_covered=intents_covered,
                      route=ROUTE)
        write(record)


def main() -> None:
    parser = argument_parser("learning_loop", __doc__, "section 11 (its tables and both plots; the self-training subsections also use bench.self_training)")
    parser.add_argument("--data", default="CLINC150",
                        help="CLINC150, BANKING77 (fetched by python -m bench.banking77), or a labeled file with train, val and test splits")
    parser.add_argument("--name", default=None, help="the data set's name in the results (default: --data)")
    parser.add_argument("--seed-per-intent", type=int, default=10)
    parser.add_argument("--round-per-intent", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="*", default=list(ALL_STRATEGIES), choices=ALL_STRATEGIES,
                        help="none, with --full: only the full-data references")
    parser.add_argument("--intents", type=int, default=0, help="keep only the first N intents (0: all)")
    parser.add_argument("--full", action="store_true", help="also train the full-data reference, once per seed (the recipe's seed)")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS),
                        help="the JSON-lines file of the records (default: bench/results/learning_loop/learning_loop.jsonl)")
    parser.add_argument("--full-accuracy", type=float, default=None,
                        help="with --report and no --full run in the results: the full-data model's test accuracy, "
                             "measured elsewhere (e.g. python -m bench.accuracy --retrain)")
    parser.add_argument("--report", action="store_true", help="only print the table and draw the plot")
    parser.add_argument("--plot", type=Path, default=None,
                        help="where the plot goes (default: beside --results, named like it); BENCHMARKS.md's images "
                             "are docs/learning_loop_clinc150.png and docs/learning_loop_banking77.png")
    parser.add_argument("--stability", type=int, nargs="*", metavar="K",
                        help="instead: the recipe on the first K labels per intent of one seed (nested sets), e.g. 10 20 40 80")
    parser.add_argument("--set", type=recipe_value, action="append", default=[], metavar="KEY=VALUE",
                        help="train with this TrainConfig field changed, e.g. --set min_train_steps=600")
    parser.add_argument("--route", choices=("either", "rule", "probability"), default="either",
                        help="what routes traffic to the queue (see ROUTE; default: either)")
    parser.add_argument("--self-train", action="store_true",
                        help="give every retrain the unlabeled traffic to self-train on (use its own --results file)")
    args = parser.parse_args()
    keep_report("learning_loop", args.output)
    global ROUTE, SELF_TRAIN
    ROUTE, SELF_TRAIN = args.route, args.self_train
    RECIPE.update(dict(args.set))
    TrainConfig(**RECIPE)  # a bad value fails here, before any training
    args.name = args.name or Path(args.data).stem
    results = Path(args.results)
    if args.report:
        report(results, args.name, args.seeds, full_accuracy=args.full_accuracy, plot=args.plot)
        return
    results.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["seed"], r["strategy"]) for r in read(results) if r.get("data") == args.name}

    def write(record: dict) -> None:
        record["data"] = args.name
        print(json.dumps(record), flush=True)
        with results.open("a") as out:
            out.write(json.dumps(record) + "\n")

    data = load_labeled_data(data_path(args.data))
    if args.intents:
        from mlcore.data import select_intents

        data = select_intents(data, data.intents[: args.intents])
    if args.stability:
        stability(data, args.stability, args.seeds[0], write, [r for r in read(results) if r.get("data") == args.name])
        return
    budget = args.round_per_intent * len(data.intents)
    print(header("The learning loop"), flush=True)
    for seed in args.seeds if args.full else []:
        if (seed, "full") not in done:
            _, record = retrain(data, data.train, seed)
            write({**record, "seed": seed, "strategy": "full", "round": 0})
    for seed in args.seeds:
        wanted = [s for s in args.strategies if (seed, s) not in done]
        if not wanted:
            continue
        labeled, traffic = seed_split(data, args.seed_per_intent, seed)
        first, first_record = retrain(data, labeled, seed, traffic)
        if (seed, "seed") not in done:
            write({**first_record, "seed": seed, "strategy": "seed", "round": 0})
        for strategy in wanted:
            run_chain(data, labeled, traffic, first, strategy=strategy, seed=seed,
                      rounds=args.rounds, budget=budget, write=write)
    report(results, args.name, plot=args.plot)


def stability(data: LabeledData, sizes: list[int], seed: int, write, records: list[dict]) -> None:
    """Test accuracy must not fall as labels grow: K per intent from one seed's shuffle, so each set
    holds the smaller ones. The loop's first model of the same seed is the same training (the same
    labels, the same seed), so it is not trained again."""
    print(header("Recipe stability"), flush=True)
    done = {(r["seed"], r["strategy"], r["labels"]): r for r in records}
    for per_intent in sorted(sizes):
        labeled, _ = seed_split(data, per_intent, seed)
        if (seed, "stability", len(labeled)) in done:
            continue
        first_model = done.get((seed, "seed", len(labeled)))
        if first_model is not None:
            record = {k: v for k, v in first_model.items() if k not in ("strategy", "data")}
        else:
            _, record = retrain(data, labeled, seed)
        write({**record, "seed": seed, "strategy": "stability", "round": 0, "per_intent": per_intent})


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(path: Path, name: str, seeds_wanted: list[int] | None = None, *, full_accuracy: float | None = None,
           plot: Path | None = None) -> None:
    """The markdown tables (mean and spread over seeds, by round) and the plot of accuracy against labels.

    A round's labels can fall short of its budget when the queue held fewer unsure items than a
    reviewer would label: the cell then says how many were spent (the mean over seeds)."""
    records = [r for r in read(path) if r.get("data") == name and (seeds_wanted is None or r["seed"] in seeds_wanted)]
    full = [r["accuracy"] for r in records if r["strategy"] == "full"] or ([full_accuracy] if full_accuracy is not None else [])
    seeds = {r["seed"]: r for r in records if r["strategy"] == "seed"}
    # strategy -> round -> [(labels, accuracy)]; round 0 is the seed model, shared by every strategy.
    curves: dict[str, dict[int, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["strategy"] not in ("seed", "full", "stability"):
            curves[r["strategy"]][r["round"]].append((r["labels"], r["accuracy"]))
    for strategy in curves:
        curves[strategy][0] = [(r["labels"], r["accuracy"]) for r in seeds.values()]
    rounds = sorted({n for curve in curves.values() for n in curve})
    seed_labels = statistics.mean(r["labels"] for r in seeds.values()) if seeds else 0
    budget = next((r["labels"] - seeds[r["seed"]]["labels"] for r in records if r["strategy"] == "random" and r["round"] == 1
                   and r["seed"] in seeds), 0)
    print(f"\n### {name}: test accuracy by round (mean ± standard deviation over seeds {sorted(seeds)})\n")
    print("| strategy | " + " | ".join(f"{seed_labels + n * budget:,.0f} labels" for n in rounds) + " | labels to within 0.5 point of full data |")
    print("| --- |" + " --- |" * (len(rounds) + 1))
    target = statistics.mean(full) - 0.005 if full else None
    for strategy in [s for s in ALL_STRATEGIES if s in curves]:
        cells, reached = [], None
        for n in rounds:
            points = curves[strategy].get(n, [])
            labels = statistics.mean(p[0] for p in points) if points else None
            short = labels is not None and labels < seed_labels + n * budget - 0.5
            notes = ([f"{labels:,.0f} spent"] if short else []) + ([f"{len(points)} seed"] if 0 < len(points) < len(seeds) else [])
            cells.append(_cell([p[1] for p in points]) + (f" ({', '.join(notes)})" if notes else ""))
            if reached is None and target is not None and points and statistics.mean(p[1] for p in points) >= target:
                reached = labels
        needed = f"{reached:,.0f}" if reached else (f"more than {seed_labels + rounds[-1] * budget:,.0f}" if target else "no full-data model")
        print(f"| {strategy} | " + " | ".join(cells) + f" | {needed} |")
    if all("val_accuracy" in r for r in records if r["strategy"] not in ("full", "stability")):
        _validation_table(records, seeds, rounds, name)
    if full_accuracy is not None and not any(r["strategy"] == "full" for r in records):
        print(f"\nFull data (given with --full-accuracy): **{full_accuracy:.4f}**; within 0.5 point: {full_accuracy - 0.005:.4f}.")
    references = [r for r in records if r["strategy"] == "full"]
    for r in references:
        print(f"\nFull data (all {r['labels']:,} training labels, seed {r['seed']}): **{r['accuracy']:.4f}**. "
              f"Retrained in {r['retrain_seconds']:.0f} s.")
    if references:
        print(f"\nFull data over seeds {sorted(r['seed'] for r in references)}: {_cell(full)}; "
              f"within 0.5 point of the mean: {target:.4f}.")
    timing: dict[int, list[float]] = defaultdict(list)
    for r in records:
        if r["strategy"] not in ("full", "stability"):
            timing[r["round"]].append(r["retrain_seconds"])
    print("\nRetrain wall time (training, calibration and scoring the test split), mean (min-max) by round: "
          + ", ".join(f"round {n}: {statistics.mean(v):.0f} s ({min(v):.0f}-{max(v):.0f})" for n, v in sorted(timing.items())) + ".")
    stable = sorted((r for r in records if r["strategy"] == "stability"), key=lambda r: r["labels"])
    if stable:
        print("\n### Recipe stability: the same seed, more labels per intent\n")
        print("| labels per intent | labels | test accuracy | retrain wall time (s) |\n| --- | --- | --- | --- |")
        for r in stable:
            print(f"| {r['per_intent']} | {r['labels']:,} | {r['accuracy']:.4f} | {r['retrain_seconds']:.0f} |")
    if curves:
        # A side run (--self-train, --full alone) must not overwrite BENCHMARKS.md's images: the
        # plot goes beside its results unless --plot says otherwise.
        _plot(curves, full, name, plot or path.with_suffix(".png"))


def _validation_table(records: list[dict], seeds: dict, rounds: list[int], name: str) -> None:
    """The same rounds scored on the data set's validation split: the figure a default is chosen on
    (the test split only reports it)."""
    by_round: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["strategy"] not in ("seed", "full", "stability"):
            by_round[r["strategy"]][r["round"]].append(r["val_accuracy"])
    print(f"\n### {name}: validation accuracy by round (mean ± standard deviation over seeds {sorted(seeds)})\n")
    print("| strategy | " + " | ".join(f"round {n}" for n in rounds) + " |")
    print("| --- |" + " --- |" * len(rounds))
    first = [r["val_accuracy"] for r in seeds.values()]
    for strategy in [s for s in ALL_STRATEGIES if s in by_round]:
        print(f"| {strategy} | " + " | ".join(_cell(first if n == 0 else by_round[strategy].get(n, [])) for n in rounds) + " |")


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def _plot(curves, full, name, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for strategy in [s for s in ALL_STRATEGIES if s in curves]:
        points = [curves[strategy][n] for n in sorted(curves[strategy]) if curves[strategy][n]]
        x = [statistics.mean(p[0] for p in round_points) for round_points in points]
        mean = np.array([statistics.mean(p[1] for p in round_points) for round_points in points])
        spread = np.array([statistics.stdev([p[1] for p in round_points]) if len(round_points) > 1 else 0.0 for round_points in points])
        axes.plot(x, mean, marker="o", label=strategy)
        axes.fill_between(x, mean - spread, mean + spread, alpha=0.15)
    if full:
        axes.axhline(statistics.mean(full), color="black", linestyle="--", linewidth=1, label="full data")
        axes.axhline(statistics.mean(full) - 0.005, color="grey", linestyle=":", linewidth=1, label="full data − 0.5 point")
    axes.set_xlabel("labels spent")
    axes.set_ylabel("test accuracy")
    axes.set_title(f"{name}: test accuracy against labels, by review strategy\n(mean ± sd over seeds)", fontsize=11)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    print(f"\nPlot: {target}")


if __name__ == "__main__":
    main()
