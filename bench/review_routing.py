"""How much of CLINC150's test traffic the serving app would send to the review queue.

    python -m bench.review_routing [--model var/models/clinc_full.pt] [--margin 0.1]

Uses the serving path itself (the ONNX export and the routing rule of intentflow_serving.review)
at the model's recommended threshold, on the 4,500 in-scope and 1,000 out-of-scope test queries.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import CLINC_FULL, argument_parser, header, keep_report
from bench.common import REPO_ROOT as ROOT

if TYPE_CHECKING:
    from mlcore.onnx_predictor import OnnxPredictor


def routed_share(predictor: OnnxPredictor, texts: list[str], router) -> float:
    """The share of ``texts`` that ``router`` (intentflow_serving.review.ReviewRouter) sends to review."""
    routed = 0
    for prediction in predictor.predict(texts):
        second = prediction.distribution[1][1] if len(prediction.distribution) > 1 else 0.0
        routed += router.needs_review(prediction.low_confidence, prediction.confidence, second)
    return routed / len(texts)


def main() -> None:
    parser = argument_parser("review_routing", __doc__, "section 5")
    parser.add_argument("--model", default=str(ROOT / "var/models/clinc_full.pt"))
    parser.add_argument("--margin", type=float, default=0.1, help="an AMBIGUITY_MARGIN to measure beside the plain threshold")
    args = parser.parse_args()
    keep_report("review_routing", args.output)
    from mlcore.data import load_labeled_data
    from mlcore.onnx_export import export_onnx
    from mlcore.onnx_predictor import OnnxPredictor

    from intentflow_serving.review import ReviewRouter

    data = load_labeled_data(CLINC_FULL)
    with tempfile.TemporaryDirectory() as folder:
        predictor = OnnxPredictor.from_file(export_onnx(args.model, Path(folder) / "model.onnx"))
    in_scope, out_of_scope = [e.text for e in data.test], [e.text for e in data.oos_test]
    print(header("Review routing"))
    rule, threshold = predictor.rule()
    print(f"The model's review rule: {rule} < {threshold:.2f}.\n")
    print("| rule | out-of-scope test queries sent to review | in-scope test queries sent to review |\n| --- | --- | --- |")
    for name, margin in ((f"{rule} < {threshold:.2f}", None), (f"... or top-two margin < {args.margin}", args.margin)):
        router = ReviewRouter(None, bound_seconds=0.2, retries=0, ambiguity_margin=margin)
        print(f"| {name} | {routed_share(predictor, out_of_scope, router):.4f} ({len(out_of_scope)}) | "
              f"{routed_share(predictor, in_scope, router):.4f} ({len(in_scope)}) |")


if __name__ == "__main__":
    main()
