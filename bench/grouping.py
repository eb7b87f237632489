"""Near-duplicate grouping of the review queue on CLINC150: how many decisions the queue needs with
identical-text grouping and with near-duplicate grouping, and how pure the groups are.

    python -m bench.grouping [--seed 0] [--per-intent 10] [--model var/models/clinc_k10_seed0.pt]

A model is trained with the default recipe on 10 examples per intent (the learning loop's seed
set). Its sentence embeddings (what the worker stores for each review item) group the queries as
the worker does (mlcore.grouping.leader_groups, in arrival order, after identical texts). The
similarity threshold is chosen on the validation split (3,000 in-scope + 100 out-of-scope
queries): the lowest at which at least 98% of grouped pairs share an intent. The test split
(4,500 + 1,000) is scored once, at that threshold.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.common import CLINC_FULL, argument_parser, header, keep_report
from bench.common import REPO_ROOT as ROOT
from bench.learning_loop import seed_split
from mlcore.grouping import leader_groups, pair_purity

TARGET_PURITY = 0.98
THRESHOLDS = [round(t, 2) for t in np.arange(0.50, 0.995, 0.01)]


def fold(text: str) -> str:
    """Identical texts as the queue sees them (labeling.models.fold_text)."""
    return " ".join(text.split()).casefold()


def group(texts: list[str], vectors: np.ndarray, threshold: float | None) -> list[int]:
    """Each text's group: identical (folded) texts first, then, with a threshold, near-duplicates
    by leader clustering of the first text of each identical group, in arrival order."""
    first_of: dict[str, int] = {}
    identical = [first_of.setdefault(fold(text), index) for index, text in enumerate(texts)]
    if threshold is None:
        return identical
    units = sorted(set(identical))
    leaders = leader_groups(vectors[units], threshold)
    lead_of_unit = {unit: units[leader] for unit, leader in zip(units, leaders)}
    return [lead_of_unit[unit] for unit in identical]


def figures(groups: list[int], intents: list[str]) -> dict:
    purity, pairs = pair_purity(groups, intents)
    members: dict[int, list[str]] = {}
    for g, intent in zip(groups, intents):
        members.setdefault(g, []).append(intent)
    # One decision labels a whole group: the items whose intent is not the group's most common one.
    wrong = sum(len(m) - max(m.count(i) for i in set(m)) for m in members.values())
    return {"items": len(groups), "decisions": len(members), "purity": purity, "pairs": pairs,
            "grouped_items": sum(len(m) for m in members.values() if len(m) > 1), "largest": max(len(m) for m in members.values()),
            "mislabeled_by_group": wrong}


def model(path: Path, data, seed: int, per_intent: int):
    from mlcore.config import TrainConfig
    from mlcore.predictor import Predictor
    from mlcore.train import train

    if not path.exists():
        labeled, _ = seed_split(data, per_intent, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        train(TrainConfig(seed=seed), replace(data, train=labeled, oos_test=[])).save(path)
    return Predictor.from_file(path)


def queries(examples, seed: int) -> tuple[list[str], list[str]]:
    rows = list(examples)
    random.Random(seed).shuffle(rows)  # an arrival order
    return [e.text for e in rows], [e.intent for e in rows]


def main() -> None:
    parser = argument_parser("grouping", __doc__, "section 12")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-intent", type=int, default=10)
    parser.add_argument("--model", default=str(ROOT / "var/models/clinc_k10_seed0.pt"))
    args = parser.parse_args()
    keep_report("grouping", args.output)
    from mlcore.data import load_labeled_data

    data = load_labeled_data(CLINC_FULL)
    predictor = model(Path(args.model), data, args.seed, args.per_intent)
    print(header("Near-duplicate grouping of the review queue"))
    print(f"model: the default recipe on {args.per_intent} examples per intent (seed {args.seed}), version {predictor.version}, "
          f"threshold {predictor.threshold:.2f}\n")

    val_texts, val_intents = queries([*data.val, *data.oos_val], args.seed)
    val_vectors = predictor.embeddings(val_texts)
    val_below = np.flatnonzero(predictor.probabilities(val_texts).max(axis=1) < predictor.threshold)
    populations = {"all": np.arange(len(val_texts)), "below": val_below}
    table = {(name, t): figures(group([val_texts[i] for i in rows], val_vectors[rows], t), [val_intents[i] for i in rows])
             for name, rows in populations.items() for t in THRESHOLDS}
    # The queue holds the queries below the threshold (the hard ones): the default must keep its
    # groups pure there as well as over all traffic.
    # The below-threshold set is small (a few hundred pairs), so its purity is noisy from one
    # similarity to the next: the default is the lowest similarity from which every higher one keeps
    # the target too, not the lowest single one that happens to reach it.
    pure = [all(table[name, t]["purity"] is None or table[name, t]["purity"] >= TARGET_PURITY for name in populations) for t in THRESHOLDS]
    chosen = next((t for i, t in enumerate(THRESHOLDS) if all(pure[i:])), THRESHOLDS[-1])
    print(f"Validation split (3,000 in-scope + 100 out-of-scope queries): all of them, and the {len(val_below)} below the "
          f"model's threshold ({predictor.threshold:.2f}), the queue serving would send:\n")
    print("| similarity | decisions (all) | pairs sharing an intent (all) | decisions (below threshold) | pairs sharing an intent (below threshold) |\n"
          "| --- | --- | --- | --- | --- |")
    for threshold in THRESHOLDS:
        if round(threshold * 100) % 5 and threshold != chosen:
            continue  # every 0.05, and the chosen one
        cells = [f"{table[name, threshold]['decisions']} | " + (f"{table[name, threshold]['purity']:.4f} ({table[name, threshold]['pairs']} pairs)"
                 if table[name, threshold]["purity"] is not None else "- (no pairs)") for name in populations]
        print(f"| {threshold:.2f}{' (chosen)' if threshold == chosen else ''} | {cells[0]} | {cells[1]} |")
    print(f"\nchosen REVIEW_GROUP_SIMILARITY: {chosen:.2f} (the lowest from which every higher similarity keeps at least "
          f"{TARGET_PURITY:.0%} of grouped pairs sharing an intent, over all queries and over those below the threshold)\n")

    test_texts, test_intents = queries([*data.test, *data.oos_test], args.seed)
    test_vectors = predictor.embeddings(test_texts)
    confidence = predictor.probabilities(test_texts).max(axis=1)
    below = np.flatnonzero(confidence < predictor.threshold)
    print("Test split, scored once at the chosen similarity:\n")
    print("| queue | items | decisions, identical texts grouped | decisions, near-duplicates grouped | saved | items in groups of 2+ "
          "| largest group | pairs sharing an intent | items a group decision would mislabel |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rows in (("every test query (4,500 in scope + 1,000 out of scope)", np.arange(len(test_texts))),
                       (f"the queries below the model's threshold ({predictor.threshold:.2f}), as serving routes them", below)):
        texts, intents, vectors = [test_texts[i] for i in rows], [test_intents[i] for i in rows], test_vectors[rows]
        same, near = figures(group(texts, vectors, None), intents), figures(group(texts, vectors, chosen), intents)
        print(f"| {name} | {len(rows)} | {same['decisions']} | {near['decisions']} | {1 - near['decisions'] / same['decisions']:.1%} "
              f"| {near['grouped_items']} | {near['largest']} | {near['purity']:.4f} ({near['pairs']} pairs) | {near['mislabeled_by_group']} |")


if __name__ == "__main__":
    main()
