"""Training recipes for issue 15 (its accuracy target on CLINC150 with the default encoder), on the full CLINC150.

    python -m bench.recipes [--only NAME ...] [--data PATH | --demo | --few-shot] [--seeds N]

--data takes another labeled file in CLINC150's layout, e.g. BANKING77 (`python -m bench.banking77`
writes var/cache/banking77.json): a data set the recipes are not tuned on, to see whether a change
that wins on CLINC150's validation split holds there too. --demo trains on the demo set shipped
with the project (no validation or test split of its own: the run splits off a tenth to validate);
--few-shot on 10 CLINC150 intents x 10 training examples (bench.choose_defaults's small set),
with their validation and test splits and CLINC150's out-of-scope rows.

--seeds N repeats the run N times, each with its own seed s = 0..N-1: the training seed is
TrainConfig's default plus s, the few-shot slice draws its 10 intents and their 10 examples with s
(seed 0 is the first 10 intents in alphabetical order, the single-run slice), and the demo set
splits off a different validation tenth. It then prints each recipe's mean and spread over the
seeds and how many seeds each other recipe beats, ties or loses to today's on each figure.

Each candidate is today's recipe with one change, trained from the same seed on the train split;
the validation split picks the best epoch and fits the temperature, as in every run. The choice is
made on validation accuracy; the test figures are printed once per candidate, beside the training
time of today's recipe measured in the same run.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import CLINC_FULL, argument_parser, header, keep_report
from bench.common import REPO_ROOT as ROOT

# The recipe before issue 15 (plain cross-entropy, the calibrated probability as the review rule),
# spelled out since the defaults changed; every candidate is it with one change.
TODAY = {"label_smoothing": 0.0, "oos_score": "probability"}
CANDIDATES = {
    "today's recipe": TODAY,
    "label smoothing 0.1": {**TODAY, "label_smoothing": 0.1},
    "4 epochs": {**TODAY, "epochs": 4},
    "learning rate 3e-4": {**TODAY, "learning_rate": 3e-4},
    "new defaults": {},  # label smoothing 0.1 with the in-scope score (energy + Mahalanobis), none without it
}


def few_shot_slice(data, intents: int = 10, per_intent: int = 10, seed: int = 0):
    import random

    from bench.choose_defaults import subset

    every_intent = sorted({e.intent for e in data.train})
    chosen = every_intent[:intents] if seed == 0 else sorted(random.Random(seed).sample(every_intent, intents))
    small = subset(data, chosen, per_intent, seed=seed)
    small.oos_train, small.oos_val, small.oos_test = data.oos_train, data.oos_val, data.oos_test
    return small


def load(args):
    """The data set's name and a function from a seed to the data that seed trains on."""
    from mlcore.data import load_labeled_data

    if args.demo:
        demo = load_labeled_data(ROOT / "data/demo/intents.csv")
        return "the demo set", lambda seed: demo
    data = load_labeled_data(args.data)
    if args.few_shot:
        return "a 10-intent few-shot slice of CLINC150", lambda seed: few_shot_slice(data, seed=seed)
    return Path(args.data).stem, lambda seed: data


def rule_figures(report: dict | None) -> str:
    """The review rule's figures: threshold, in-scope share sent to review, out-of-scope recall and AUROC."""
    if not report:
        return "- | - | - | -"
    cells = [report.get("rule", "confidence"), report.get("in_scope_review_rate"), report.get("oos_recall"), report.get("oos_auroc")]
    return " | ".join(c if isinstance(c, str) else ("-" if c is None else f"{c:.4f}") for c in cells)


def balanced_objective(report: dict | None) -> float | None:
    """The probability rule's own objective at its threshold: the mean of the in-scope share answered
    and right, and the out-of-scope recall (mlcore.evaluate.recommend_threshold). It weighs the
    review a rule costs against the recall it buys, so two thresholds can be compared by it."""
    if not report or report.get("rule", "confidence") != "confidence" or report.get("oos_recall") is None:
        return None
    at = next(point for point in report["coverage"] if abs(point["threshold"] - report["threshold"]) < 1e-9)
    answered_and_right = at["coverage"] * (at["accuracy"] or 0.0)
    return 0.5 * answered_and_right + 0.5 * report["oos_recall"]


SUMMARY_KEYS = {
    "val accuracy": lambda val, test: val["accuracy"],
    "val AUROC": lambda val, test: val.get("oos_auroc"),
    "test accuracy": lambda val, test: test["accuracy"] if test else None,
    "test review": lambda val, test: test.get("in_scope_review_rate") if test else None,
    "test OOS recall": lambda val, test: test.get("oos_recall") if test else None,
    "test AUROC": lambda val, test: test.get("oos_auroc") if test else None,
    "test balanced objective": lambda val, test: balanced_objective(test),
}


def print_summary(rows: dict[str, list[tuple[dict, dict | None]]]) -> None:
    """Mean and spread over the seeds, then today's recipe against each other recipe, seed by seed."""
    import statistics

    def cell(values: list) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {spread:.4f}"

    print(f"\n### Over {len(next(iter(rows.values())))} seeds: mean ± standard deviation\n")
    print("| recipe | " + " | ".join(SUMMARY_KEYS) + " |\n|" + " --- |" * (len(SUMMARY_KEYS) + 1))
    for name, results in rows.items():
        print(f"| {name} | " + " | ".join(cell([figure(val, test) for val, test in results]) for figure in SUMMARY_KEYS.values()) + " |")
    baseline = rows.get("today's recipe")
    if not baseline or len(rows) < 2:
        return
    print("\n### Seed by seed against today's recipe (better / equal / worse)\n")
    print("| recipe | " + " | ".join(SUMMARY_KEYS) + " |\n|" + " --- |" * (len(SUMMARY_KEYS) + 1))
    for name, results in rows.items():
        if name == "today's recipe":
            continue
        cells = []
        for key, figure in SUMMARY_KEYS.items():
            pairs = [(figure(*ours), figure(*theirs)) for ours, theirs in zip(results, baseline)]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            lower_is_better = key == "test review"
            equal = sum(abs(a - b) < 1e-12 for a, b in pairs)
            better = sum(abs(a - b) >= 1e-12 and ((a < b) if lower_is_better else (a > b)) for a, b in pairs)
            cells.append(f"{better} / {equal} / {len(pairs) - better - equal}" if pairs else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argument_parser("recipes", __doc__, "section 14")
    parser.add_argument("--only", nargs="*", choices=list(CANDIDATES), help="run only these (today's recipe always runs, for the time)")
    parser.add_argument("--no-baseline", action="store_true", help="do not train today's recipe first (no time ratio)")
    parser.add_argument("--data", default=str(CLINC_FULL), help="a labeled file in CLINC150's layout (default: CLINC150)")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--demo", action="store_true", help="the demo data set instead")
    shape.add_argument("--few-shot", action="store_true", help="10 intents x 10 examples of --data instead")
    parser.add_argument("--seeds", type=int, default=1, help="repeat with this many seeds and summarise (default 1)")
    args = parser.parse_args()
    keep_report("recipes", args.output)
    from mlcore.config import TrainConfig
    from mlcore.train import train

    name_of_data, data_for = load(args)
    names = [name for name in CANDIDATES if not args.only or name in args.only or (name == "today's recipe" and not args.no_baseline)]
    print(header(f"Training recipes on {name_of_data} (issue 15)"))
    print("The review rule's figures (rule, in-scope share sent to review, out-of-scope recall, AUROC) are at the threshold "
          "the run recommends on validation. Training time is the whole train() call (with fitting the in-scope score).\n")
    print("| seed | recipe | val accuracy | test accuracy | val rule | val review | val OOS recall | val AUROC | test rule | test review "
          "| test OOS recall | test AUROC | training (s) | time / today's |\n|" + " --- |" * 14,
          flush=True)
    rows: dict[str, list] = {name: [] for name in names}
    for seed in range(args.seeds):
        data, today_seconds = data_for(seed), None
        for name in names:
            config = TrainConfig(**{**CANDIDATES[name], "seed": TrainConfig.seed + seed})
            started = time.perf_counter()
            result = train(config, data)
            seconds = time.perf_counter() - started
            today_seconds = today_seconds or (seconds if name == "today's recipe" else None)
            val, test = result.metrics["validation"], result.metrics.get("test")
            rows[name].append((val, test))
            print(f"| {seed} | {name} | {val['accuracy']:.4f} | {test['accuracy'] if test else float('nan'):.4f} | {rule_figures(val)} | {rule_figures(test)} "
                  f"| {seconds:.0f} | {f'{seconds / today_seconds:.2f}' if today_seconds else '-'} |", flush=True)
    if args.seeds > 1:
        print_summary(rows)


if __name__ == "__main__":
    main()
