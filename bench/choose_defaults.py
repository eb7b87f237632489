"""How the training defaults were chosen: a few recipes on a small and a larger intent set.

    python -m bench.choose_defaults

Small: 10 CLINC150 intents x 10 training examples (the size of a new project's first labels).
Larger: all 150 intents x 20 examples. Each is scored on the test split of its intents.
"""

from __future__ import annotations

import random
import time

from bench.common import CLINC_FULL, argument_parser, header, keep_report
from mlcore.config import TrainConfig
from mlcore.data import LabeledData, load_labeled_data

RECIPES = {
    "common: lr 5e-5, random head, 3 epochs": dict(learning_rate=5e-5, head_init="random", min_train_steps=0),
    "lr 2e-4, random head, 3 epochs": dict(learning_rate=2e-4, head_init="random", min_train_steps=0),
    "lr 2e-4, centroid head, 3 epochs": dict(learning_rate=2e-4, head_init="centroid", min_train_steps=0),
    "default: lr 2e-4, centroid head, >=150 steps": dict(),
}


def subset(data: LabeledData, intents: list[str], per_intent: int, seed: int = 0) -> LabeledData:
    rng = random.Random(seed)
    train_rows = []
    for intent in intents:
        rows = [e for e in data.train if e.intent == intent]
        train_rows += rng.sample(rows, per_intent)
    wanted = set(intents)
    return LabeledData(train=train_rows, val=[e for e in data.val if e.intent in wanted],
                       test=[e for e in data.test if e.intent in wanted])


def main() -> None:
    args = argument_parser("choose_defaults", __doc__, "section 2").parse_args()
    keep_report("choose_defaults", args.output)
    from mlcore.train import train

    full = load_labeled_data(CLINC_FULL)
    intents = sorted({e.intent for e in full.train})
    sets = {
        "small (10 intents x 10)": subset(full, random.Random(1).sample(intents, 10), 10),
        "larger (150 intents x 20)": subset(full, intents, 20),
    }
    print(header("Choosing the training defaults"))
    print("| data | recipe | test accuracy | steps | train time (s) |\n| --- | --- | --- | --- | --- |")
    for set_name, data in sets.items():
        for recipe, overrides in RECIPES.items():
            started = time.monotonic()
            result = train(TrainConfig(**overrides), data)
            accuracy = result.metrics["test"]["accuracy"]
            print(f"| {set_name} | {recipe} | {accuracy:.4f} | {result.metrics['training']['steps']} | "
                  f"{time.monotonic() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
