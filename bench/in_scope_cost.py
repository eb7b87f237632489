"""What the in-scope score costs a warm request (issue 15): the same model exported with and without it.

    python -m bench.in_scope_cost [--model var/models/clinc_full.pt] [--iterations 2000]

The model is the default recipe's on CLINC150 (`python -m bench.accuracy --retrain`), whose artifact carries
the score's statistics. The copy without them is the same weights with the probability rule. Both
are exported to ONNX (fp32 and int8, as a promotion does) and the call serving makes for one text,
``answer`` (tokenize, run the graph, calibrate, and for the scored model the distance in the graph
and the score's numpy), is timed alone in a tight loop, the four models taking turns over five rounds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import argument_parser, header, keep_report, machine
from bench.common import REPO_ROOT as ROOT
from bench.serving import bare_calls_in_turns


def main() -> None:
    parser = argument_parser("in_scope_cost", __doc__, "section 15")
    parser.add_argument("--model", default=str(ROOT / "var/models/clinc_full.pt"))
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    keep_report("in_scope_cost", args.output)
    from mlcore.artifact import load_artifact, save_artifact
    from mlcore.onnx_export import export_onnx
    from mlcore.quantize import quantize_int8

    artifact = load_artifact(args.model)
    if "in_scope_rule" not in artifact:
        raise SystemExit(f"{args.model} has no in-scope score: train it with today's defaults (`python -m bench.accuracy --retrain`).")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        save_artifact({k: v for k, v in artifact.items() if k != "in_scope_rule"}, folder / "plain.pt")
        paths = {}
        for name, source in (("without", folder / "plain.pt"), ("with", Path(args.model))):
            fp32 = export_onnx(source, folder / f"{name}.onnx")
            paths[f"fp32, {name} the score"] = fp32
            paths[f"int8, {name} the score"] = quantize_int8(fp32, folder / f"{name}.int8.onnx")
        sizes = {name: path.stat().st_size / 1e6 for name, path in paths.items()}
        results = dict(zip(paths, bare_calls_in_turns(list(paths.values()), args.iterations, method="answer")))
    print(header("The in-scope score's cost in the warm call"))
    print(f"{machine()}; one text, `answer()`, {args.iterations} calls per model over five rounds.\n")
    print("| model | median (ms) | p99 (ms) | file (MB) |\n| --- | --- | --- | --- |")
    for name, figures in results.items():
        print(f"| {name} | {figures['p50']:.3f} | {figures['p99']:.3f} | {sizes[name]:.1f} |")
    for precision in ("fp32", "int8"):
        ratio = results[f"{precision}, with the score"]["p50"] / results[f"{precision}, without the score"]["p50"]
        print(f"\n{precision}: with / without the score, median: {ratio:.3f}", end="")
    print()


if __name__ == "__main__":
    main()
