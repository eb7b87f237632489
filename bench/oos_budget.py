"""The review budget of the in-scope score, chosen on CLINC150's validation split (issue 15).

    python -m bench.oos_budget [--model var/models/clinc_full.pt]

For both logit parts of the score (energy, max logit; each + Mahalanobis) fitted on the model's
in-scope validation texts as training fits it, the validation AUROC and the out-of-scope recall on
the 200 out-of-scope rows a run tunes with, at each budget (the in-scope share sent to review).
Only the validation split is read: the test split is scored once, by the training run.
"""

from __future__ import annotations

from bench.common import CLINC_FULL, argument_parser, header, keep_report
from bench.common import REPO_ROOT as ROOT

BUDGETS = (0.04, 0.05, 0.06, 0.07, 0.08, 0.10)


def main() -> None:
    parser = argument_parser("oos_budget", __doc__, "section 13 (The threshold rule, settled on validation, and the score in the product)")
    parser.add_argument("--model", default=str(ROOT / "var/models/clinc_full.pt"))
    args = parser.parse_args()
    keep_report("oos_budget", args.output)
    from mlcore.data import load_labeled_data
    from mlcore.metrics import auroc
    from mlcore.ood import InScopeScorer
    from mlcore.predictor import Predictor

    predictor = Predictor.from_file(args.model)
    if predictor.scorer is None:
        raise SystemExit(f"{args.model} has no in-scope score: train it with today's defaults (`python -m bench.accuracy --retrain`).")
    data = load_labeled_data(CLINC_FULL)
    in_scope = predictor.outputs([e.text for e in data.val], batch_size=128)
    out_of_scope = predictor.outputs([e.text for e in data.oos_train + data.oos_val], batch_size=128)
    print(header("The in-scope score's review budget (CLINC150 validation)"))
    print("| score | val AUROC | " + " | ".join(f"OOS recall at {b:.2f}" for b in BUDGETS) + " |\n| --- | --- | " + "--- | " * len(BUDGETS))
    for logit_score in ("energy", "max_logit"):
        scorer = InScopeScorer.fit(logit_score=logit_score, logits=in_scope[0], distances=in_scope[1], threshold=BUDGETS[0])
        shares = scorer.score(*out_of_scope)
        recalls = " | ".join(f"{(shares < budget).mean():.3f}" for budget in BUDGETS)
        print(f"| {logit_score} + Mahalanobis | {auroc(scorer.combined(*in_scope), scorer.combined(*out_of_scope)):.4f} | {recalls} |")


if __name__ == "__main__":
    main()
