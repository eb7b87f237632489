"""Serving benchmarks: int8 against fp32 (accuracy, warm latency, cold start from S3, bytes fetched,
throughput under load), beside the transformers baseline, all in one run.

    python -m bench.serving [--model var/models/clinc_full.pt] [--iterations 300] [--load-seconds 10]
    python -m bench.serving --handler-only [--iterations 2000] [--rounds 3]

The model is the default encoder fine-tuned on CLINC150 (section 1 of BENCHMARKS.md). Ours is
intentflow_serving.app serving its ONNX export (int8 as promotion makes it, and fp32) through the
Mangum handler with API Gateway v2 events; the baseline serves the same weights with transformers
(from_pretrained + pipeline("text-classification")). Every cold start reads its model from S3
(moto's server on 127.0.0.1), as a Lambda function does at init.

--handler-only measures one thing: what the Lambda handler adds to the bare model call it wraps,
the two timed in alternating turns in one process. Without --model's file it trains a stand-in
with the same graph first (see stand_in_model; kept in bench/results/serving/ for the next run).
How long each run takes: BENCHMARKS.md, section 4.

Its exports, the baseline's model directory and the stand-in go to bench/results/serving/, with a
copy of the printed report (--output); the figures of a whole run also go to stderr as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CLINC_FULL, argument_parser, header, keep_report, results_dir
from bench.common import REPO_ROOT as ROOT

TEXT = "what is the balance of my checking account"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.50) * 1000, "p95": pick(0.95) * 1000, "p99": pick(0.99) * 1000}


def timed(*calls, iterations: int, warmup: int = 30) -> list[dict[str, float]]:
    """Time the calls interleaved (a, b, c, a, b, c, ...) so machine noise hits each alike."""
    for _ in range(warmup):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(iterations):
        for call, bucket in zip(calls, samples):
            started = time.perf_counter()
            call()
            bucket.append(time.perf_counter() - started)
    return [percentiles(bucket) for bucket in samples]


def bare_calls_in_turns(paths: list[Path], iterations: int, rounds: int = 5, method: str = "probabilities") -> list[dict[str, float]]:
    """The bare model call of each export, timed alone in a tight loop, the models taking turns
    (a, b, c, a, b, c, ...: a slow spell of this shared host falls on all alike). One onnxruntime
    session at a time: another one's thread pool, spinning after its own calls, would take a core."""
    import gc

    from mlcore.onnx_predictor import OnnxPredictor

    samples: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for path, bucket in zip(paths, samples):
            predictor = OnnxPredictor.from_file(path)
            call = getattr(predictor, method)
            for _ in range(30):
                call([TEXT])
            for _ in range(max(1, iterations // rounds)):
                started = time.perf_counter()
                call([TEXT])
                bucket.append(time.perf_counter() - started)
            del predictor
            gc.collect()
    return [percentiles(bucket) for bucket in samples]


# One cold start in a fresh process: the task root first on its path (the code as the image lays it
# out), then the repository root (bench.events, and bench.baseline_app for the baseline).
COLD = """
import json, sys, time
sys.path[:0] = {paths!r}
from bench.events import http_api_v2, FakeContext
import {module} as served
response = served.handler(http_api_v2("POST", "/classify", {{"text": {text!r}}}), FakeContext())
assert response["statusCode"] == 200, response
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"maxrss_mb": peak_kb / 1024,
                  "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}}))
"""


def task_root(work: Path) -> Path:
    """Our code laid out as lambda/Dockerfile lays it out (lambda/build.py: handler.py, the serving
    package and the inference part of mlcore), bytecode compiled as the image has it."""
    root = work / "task-root"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, str(ROOT / "lambda" / "build.py"), str(root)], check=True, stdout=subprocess.DEVNULL)
    return root


def cold_start(module: str, env: dict, runs: int, code_root: Path) -> dict:
    code = COLD.format(paths=[str(code_root), str(ROOT)], module=module, text=TEXT)
    walls, last = [], {}
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT)
        walls.append(time.perf_counter() - started)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        last = json.loads(out.stdout.strip().splitlines()[-1])
    return {"median_s": statistics.median(walls), "min_s": min(walls), **last}


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def install_size(requirements: Path) -> float | None:
    with tempfile.TemporaryDirectory() as target:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", target, "-r", str(requirements)],
                                capture_output=True, text=True)
        return folder_mb(Path(target)) if result.returncode == 0 else None


async def load(url: str, seconds: float, concurrency: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(client):
        nonlocal errors
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await client.post(url, json={"text": TEXT})
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    async with httpx.AsyncClient(timeout=30) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"requests_per_s": len(latencies) / elapsed, "errors": errors, **percentiles(latencies)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.25)
    raise SystemExit("moto server did not start")


# The two ways to run uvicorn on this machine's cores, each measured with both models: one process
# whose inference uses every core, and one process per core with one inference thread each (uvicorn
# --workers, from WEB_CONCURRENCY; INFERENCE_THREADS' default is then cores / workers).
SERVER_SHAPES = {"one process": 1, "one process per core": os.cpu_count() or 1}


def uvicorn_throughput(env: dict, seconds: float, concurrency: int, workers: int = 1) -> dict:
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("uvicorn")), "intentflow_serving.app:app",
                               "--port", str(port), "--log-level", "warning"], env={**os.environ, **env, "WEB_CONCURRENCY": str(workers)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.25)
        url = f"http://127.0.0.1:{port}/classify"
        if shutil.which("wrk"):  # a C client: the Python one took a core of the two from the server
            from bench.load import run_wrk

            run_wrk(url, 3, concurrency, threads=1)  # every worker has loaded its model and answered
            figures = run_wrk(url, int(seconds), concurrency, threads=1)
            return {"requests_per_s": figures["rps"], "errors": int(figures["5xx"] + figures["4xx"] + figures["socket_errors"]),
                    "p50": figures["p50_ms"], "p99": figures["p99_ms"], "client": "wrk"}
        asyncio.run(load(url, 3, concurrency))
        return {**asyncio.run(load(url, seconds, concurrency)), "client": "httpx"}
    finally:
        server.terminate()
        server.wait()


def accuracy_of_both(fp32_path: Path, int8_path: Path, data_path: Path) -> dict:
    """fp32 and int8 on CLINC150's test split (in-scope accuracy, out-of-scope AUROC, ECE after
    calibration), int8 with the temperature promotion would refit on the validation split."""
    from mlcore.data import load_labeled_data
    from mlcore.onnx_predictor import OnnxPredictor
    from mlcore.quantize import check_quantized
    from mlcore.scoring import evaluate_predictor

    data = load_labeled_data(data_path)
    fp32, int8 = OnnxPredictor.from_file(fp32_path), OnnxPredictor.from_file(int8_path)
    check = check_quantized(fp32, int8, {"validation": ([e.text for e in data.val], [e.intent for e in data.val]),
                                         "test": ([e.text for e in data.test], [e.intent for e in data.test])})
    int8.temperature = check.temperature_int8
    if check.in_scope_scorer_int8:  # as a promotion rewrites it
        from mlcore.ood import InScopeScorer

        int8.scorer = InScopeScorer.from_dict(check.in_scope_scorer_int8)
    reports = {name: evaluate_predictor(predictor, data.test, data.oos_test) for name, predictor in (("fp32", fp32), ("int8", int8))}
    return {"check": check.to_dict(), **{name: {k: r.get(k) for k in ("accuracy", "oos_auroc", "ece", "oos_recall")} for name, r in reports.items()}}


def quantize_static_int8(fp32_path: Path, out_path: Path, texts: list[str]) -> Path:
    """The alternative the issue asks to compare: static quantization, activations' ranges
    calibrated (MinMax) on the run's own validation texts, QDQ format. The shipped path is
    mlcore.quantize.quantize_int8 (dynamic); this one exists only to be measured against it."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mlcore.onnx_predictor import OnnxPredictor

    predictor = OnnxPredictor.from_file(fp32_path)
    batches = [predictor.encode(texts[i:i + 32]) for i in range(0, len(texts), 32)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(batches)

        def get_next(self):
            return next(self.left, None)

    prepared = out_path.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    # The matrix multiplications only, as dynamic quantization does: quantizing every operator
    # (softmax, the additive attention mask, LayerNorm) to per-tensor uint8 ranges broke the model
    # (BENCHMARKS.md, section 4).
    quantize_static(str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    prepared.unlink()
    from mlcore.quantize import rewrite_metadata

    return rewrite_metadata(out_path, precision="int8-static")


def static_against_dynamic(fp32_path: Path, dynamic_path: Path, data_path: Path, work: Path, iterations: int) -> dict:
    """Both int8 flavours on the test split (in-scope accuracy, agreement with fp32) and their
    bare warm latency, so BENCHMARKS.md can say why the shipped one was kept."""
    from mlcore.data import load_labeled_data
    from mlcore.onnx_predictor import OnnxPredictor
    from mlcore.quantize import check_quantized

    data = load_labeled_data(data_path)
    calibration = [e.text for e in data.val] or [e.text for e in data.train][:500]  # CLINC150 has a validation split
    static_path = quantize_static_int8(fp32_path, work / "model.int8-static.onnx", calibration)
    fp32 = OnnxPredictor.from_file(fp32_path)
    test = {"test": ([e.text for e in data.test], [e.intent for e in data.test])}
    result = {}
    for name, path in (("dynamic", dynamic_path), ("static", static_path)):
        candidate = OnnxPredictor.from_file(path)
        split = check_quantized(fp32, candidate, test).splits["test"]
        [latency] = timed(lambda: candidate.probabilities([TEXT]), iterations=iterations)
        result[name] = {"accuracy": split.int8_accuracy, "fp32_accuracy": split.fp32_accuracy, "agreement": split.agreement,
                        "p50_ms": latency["p50"], "mb": path.stat().st_size / 2**20}
        del candidate
    return result


def stand_in_model(path: Path) -> Path:
    """A model with the graph of section 1's (BENCHMARKS.md), without its long training: the default
    encoder, one epoch on 20 texts per intent of CLINC150's training split, validated on its
    validation split (150 intents, and the in-scope score, as the default recipe fits it). A warm
    call's cost is the graph's (the encoder, the 150-intent head, the score), not what it learned."""
    from dataclasses import replace

    from mlcore.config import TrainConfig
    from mlcore.data import load_labeled_data
    from mlcore.train import train

    data = load_labeled_data(CLINC_FULL)
    per_intent: dict[str, list] = {}
    for example in data.train:
        per_intent.setdefault(example.intent, []).append(example)
    rows = [example for examples in per_intent.values() for example in examples[:20]]
    result = train(TrainConfig(epochs=1, min_train_steps=0, self_training=False, device="cpu"),
                   replace(data, train=rows, test=[], oos_test=[], unlabeled=[]))
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save(path)
    return path


def handler_only(args, work: Path) -> None:
    """The Lambda handler (intentflow_serving.app's, int8 as a promotion serves it, an API Gateway v2 event)
    against the bare call it makes, timed in alternating turns (handler, bare, handler, bare, ...)
    so that a busy host slows both alike; ``--rounds`` times over, each round's ratio reported."""
    import logging

    from mlcore.onnx_export import export_onnx
    from mlcore.quantize import quantize_int8

    model = Path(args.model)
    trained_here = not model.exists()
    if trained_here:  # a stand-in trained by an earlier run is used again (its training time: BENCHMARKS.md, section 4)
        model = work / "stand-in.pt"
        if not model.exists():
            started = time.perf_counter()
            stand_in_model(model)
            print(f"(no {args.model}: trained a stand-in with the same graph in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    int8_path = quantize_int8(export_onnx(model, work / "model.onnx"), work / "model.int8.onnx")
    os.environ.update({"MODEL_URI": str(int8_path), "LOG_LEVEL": "WARNING", "REVIEW_AUDIT_RATE": "0", "TRAFFIC_SAMPLE_RATE": "0"})
    from intentflow_serving import app

    from bench.events import FakeContext, http_api_v2

    logging.getLogger("serving.request").setLevel(logging.WARNING)
    event = http_api_v2("POST", "/classify", {"text": TEXT})
    assert app.handler(event, FakeContext())["statusCode"] == 200
    predictor = app.store.get().predictor
    rounds = [timed(lambda: app.handler(event, FakeContext()), lambda: predictor.answer([TEXT]), iterations=args.iterations)
              for _ in range(args.rounds)]
    print(header("Serving: the handler against the bare call"))
    source = "a stand-in with the same graph (bench.serving: stand_in_model)" if trained_here else args.model
    print(f"model: {source}, int8; {args.iterations} alternating turns per round, {args.rounds} rounds; LOG_LEVEL=WARNING.\n")
    print("| round | handler p50 (ms) | bare p50 (ms) | handler p95 (ms) | bare p95 (ms) | handler / bare, p50 |\n| --- | --- | --- | --- | --- | --- |")
    for number, (handler, bare) in enumerate(rounds, 1):
        print(f"| {number} | {handler['p50']:.2f} | {bare['p50']:.2f} | {handler['p95']:.2f} | {bare['p95']:.2f} | {handler['p50'] / bare['p50']:.2f} |")
    ratios = sorted(handler["p50"] / bare["p50"] for handler, bare in rounds)
    added = sorted(handler["p50"] - bare["p50"] for handler, bare in rounds)
    print(f"\nhandler / bare call, p50: {statistics.median(ratios):.2f} (rounds {ratios[0]:.2f} to {ratios[-1]:.2f}); "
          f"the handler adds {statistics.median(added):.2f} ms at the median ({added[0]:.2f} to {added[-1]:.2f})")
    print(json.dumps({"rounds": [{"handler": h, "bare": b} for h, b in rounds]}), file=sys.stderr)


def main() -> None:
    parser = argument_parser("serving", __doc__, "section 4 (--handler-only: its first subsection, One request path)")
    parser.add_argument("--model", default=str(ROOT / "var/models/clinc_full.pt"))
    parser.add_argument("--data", default=str(CLINC_FULL), help="scores fp32 and int8 on its test split")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--handler-only", action="store_true", help="only the handler against the bare call it wraps")
    parser.add_argument("--rounds", type=int, default=3, help="--handler-only: how many times to repeat the alternating turns")
    args = parser.parse_args()
    work = results_dir("serving")
    keep_report("serving", args.output)
    if args.handler_only:
        handler_only(args, work)
        return

    from bench.hf_baseline import export_hf_directory
    from mlcore.onnx_export import export_onnx
    from mlcore.quantize import quantize_int8

    # "Before": the fp32 export as it was served before int8 (no transformer fusions; traced with
    # plain attention, which was measured faster than the SDPA trace it replaces, so the ratios
    # below are against the faster of the two). "fused fp32": what a promotion now serves when the
    # gate refuses int8. int8: quantized from the fused export, as a promotion makes it.
    before_path = export_onnx(args.model, work / "model.before.onnx", fuse=False)
    fp32_path = export_onnx(args.model, work / "model.onnx")
    int8_path = quantize_int8(fp32_path, work / "model.int8.onnx")
    hf_dir = work / "hf-model"
    shutil.rmtree(hf_dir, ignore_errors=True)
    export_hf_directory(args.model, hf_dir)
    print(header("Serving"))
    accuracy = accuracy_of_both(fp32_path, int8_path, Path(args.data)) if Path(args.data).exists() else None
    # Static quantization from the unfused export (its calibration cannot read onnxruntime's fused operators).
    flavours = static_against_dynamic(before_path, int8_path, Path(args.data), work, args.iterations) if accuracy else None

    # Cold starts first, each in fresh processes, every model read from S3 (moto's server on
    # 127.0.0.1) as a Lambda function reads it at init: the same bucket for ours and the baseline.
    moto, endpoint = start_moto()
    try:
        import boto3

        s3_env = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                  "AWS_DEFAULT_REGION": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket="models")
        s3.upload_file(str(before_path), "models", "fp32/model.onnx")
        s3.upload_file(str(int8_path), "models", "int8/model.onnx")
        for file in hf_dir.iterdir():
            s3.upload_file(str(file), "models", f"hf/{file.name}")
        fetched = {"fp32": before_path.stat().st_size, "int8": int8_path.stat().st_size,
                   "baseline": sum(f.stat().st_size for f in hf_dir.iterdir())}
        code_root = task_root(work)
        cold = {
            # handler: the module the Lambda Handler setting names (handler.handler), as the runtime imports it.
            "int8": cold_start("handler", {**s3_env, "MODEL_URI": "s3://models/int8/model.onnx"}, args.cold_runs, code_root),
            "fp32": cold_start("handler", {**s3_env, "MODEL_URI": "s3://models/fp32/model.onnx"}, args.cold_runs, code_root),
            "baseline": cold_start("bench.baseline_app", {**s3_env, "BASELINE_MODEL_S3": "s3://models/hf/"}, args.cold_runs, code_root),
        }
    finally:
        moto.terminate()
        moto.wait()

    # Warm latency, one short utterance, in this process. The bare calls first, each alone (a
    # second onnxruntime session would add a second thread pool spinning on the same cores), then
    # the int8 app: its handler and its bare call, interleaved.
    import logging

    bare_fp32, bare_fused_fp32, bare_int8_alone = bare_calls_in_turns([before_path, fp32_path, int8_path], args.iterations)
    os.environ.update({"MODEL_URI": str(int8_path), "LOG_LEVEL": "WARNING"})
    from intentflow_serving import app

    from bench.events import FakeContext, http_api_v2

    logging.getLogger("serving.request").setLevel(logging.WARNING)
    event = http_api_v2("POST", "/classify", {"text": TEXT})
    bare_predictor = app.store.get().predictor
    # The bare call is the one the handler makes (answer: the probabilities and the in-scope score).
    handler, bare_int8 = timed(lambda: app.handler(event, FakeContext()), lambda: bare_predictor.answer([TEXT]), iterations=args.iterations)
    from bench.hf_baseline import load_pipeline

    pipe = load_pipeline(hf_dir)
    [pipeline_latency] = timed(lambda: pipe(TEXT), iterations=args.iterations)

    # Throughput under concurrent load, uvicorn on 127.0.0.1, bounded in time: int8, then fp32, in
    # each of the two server shapes.
    # With the server's default log level (the latency above was taken without it): the one JSON
    # line per request is written (to /dev/null).
    throughput = {shape: {name: uvicorn_throughput({"MODEL_URI": str(path), "LOG_LEVEL": "INFO"}, args.load_seconds, args.concurrency, workers)
                          for name, path in (("int8", int8_path), ("fp32", before_path))}
                  for shape, workers in SERVER_SHAPES.items()}
    report(args, accuracy, flavours, cold, fetched, {"handler": handler, "bare_int8": bare_int8, "bare_fp32": bare_fp32, "bare_fused_fp32": bare_fused_fp32,
                                           "bare_int8_alone": bare_int8_alone, "pipeline": pipeline_latency},
           throughput, fp32_path, int8_path)


def report(args, accuracy, flavours, cold, fetched, latency, throughput, fp32_path, int8_path) -> None:
    import torch
    import transformers

    if accuracy:
        print("| CLINC150 test split | fp32 | int8 |\n| --- | --- | --- |")
        for key, name in (("accuracy", "in-scope accuracy"), ("oos_auroc", "out-of-scope AUROC"), ("ece", "ECE after calibration"),
                          ("oos_recall", "out-of-scope recall at the threshold")):
            print(f"| {name} | {accuracy['fp32'][key]:.4f} | {accuracy['int8'][key]:.4f} |")
        agreement = {name: split["agreement"] for name, split in accuracy["check"]["splits"].items()}
        print(f"\nint8 top-1 agreement with fp32: {agreement}; the promotion gate would "
              f"{'accept' if accuracy['check']['accepted'] else 'refuse'} it ({'; '.join(accuracy['check']['reasons']) or 'no reason against'}).\n")
    if flavours:
        print("| int8 flavour (test split) | in-scope accuracy | fp32 accuracy | top-1 agreement with fp32 | bare p50 (ms) | MB |\n"
              "| --- | --- | --- | --- | --- | --- |")
        for name, label in (("dynamic", "dynamic, from the fused export (shipped)"),
                            ("static", "static, MatMuls MinMax-calibrated on the validation split (QDQ), from the unfused export")):
            f = flavours[name]
            print(f"| {label} | {f['accuracy']:.4f} | {f['fp32_accuracy']:.4f} | {f['agreement']:.4f} | {f['p50_ms']:.2f} | {f['mb']:.1f} |")
        print()
    print("| warm latency, one short utterance | p50 (ms) | p95 (ms) | p99 (ms) |\n| --- | --- | --- | --- |")
    for key, name in (("bare_int8_alone", "bare int8 call (tokenize, forward, softmax), alone"),
                      ("bare_fp32", "bare fp32 call (before: unfused), alone"), ("bare_fused_fp32", "bare fp32 call, fused (served when the gate refuses int8), alone"),
                      ("handler", "ours: Mangum handler (int8), API Gateway v2 event"),
                      ("bare_int8", "bare int8 call, interleaved with the handler (as the handler's calls run)"),
                      ("pipeline", "baseline: transformers pipeline()")):
        figures = latency[key]
        print(f"| {name} | {figures['p50']:.2f} | {figures['p95']:.2f} | {figures['p99']:.2f} |")
    p50 = {key: figures["p50"] for key, figures in latency.items()}
    print(f"\nbare int8 / bare fp32 (both alone) = {p50['bare_int8_alone'] / p50['bare_fp32']:.2f}; "
          f"handler / bare int8 (interleaved) = {p50['handler'] / p50['bare_int8']:.2f}\n")
    print("| cold start from S3, fresh process to first response | median (s) | best (s) | model bytes fetched (MB) | peak RSS (MB) "
          "| imports torch | imports transformers |\n| --- | --- | --- | --- | --- | --- | --- |")
    for key, name in (("int8", "ours, int8 ONNX"), ("fp32", "ours, fp32 ONNX (before this change)"),
                      ("baseline", "baseline: transformers from_pretrained + pipeline")):
        figures = cold[key]
        print(f"| {name} | {figures['median_s']:.2f} | {figures['min_s']:.2f} | {fetched[key] / 2**20:.1f} | {figures['maxrss_mb']:.0f} "
              f"| {figures['torch']} | {figures['transformers']} |")
    print(f"\nbaseline / int8 = {cold['baseline']['median_s'] / cold['int8']['median_s']:.1f}x; "
          f"int8 / fp32 = {cold['int8']['median_s'] / cold['fp32']['median_s']:.2f}\n")
    client = next(iter(next(iter(throughput.values())).values()))["client"]
    print(f"| throughput (uvicorn, {args.concurrency} clients ({client}), {args.load_seconds:.0f} s) | model | processes | inference threads each "
          "| requests/s | p50 (ms) | p99 (ms) | errors |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    cores = os.cpu_count() or 1
    for shape, by_model in throughput.items():
        workers = SERVER_SHAPES[shape]
        for name, figures in by_model.items():
            print(f"| {shape} | {name} | {workers} | {max(1, cores // workers)} | {figures['requests_per_s']:.1f} | {figures['p50']:.1f} "
                  f"| {figures['p99']:.1f} | {figures['errors']} |")
    print("\n" + "; ".join(f"{shape}: int8 / fp32 throughput = {by_model['int8']['requests_per_s'] / by_model['fp32']['requests_per_s']:.2f}"
                           for shape, by_model in throughput.items()) + "\n")
    sizes = {
        "artifact_mb": Path(args.model).stat().st_size / 2**20, "onnx_fp32_mb": fp32_path.stat().st_size / 2**20,
        "onnx_int8_mb": int8_path.stat().st_size / 2**20, "serving_install_mb": install_size(ROOT / "lambda" / "requirements.txt"),
        "torch_mb": folder_mb(Path(torch.__file__).parent), "transformers_mb": folder_mb(Path(transformers.__file__).parent),
    }
    print("| size | MB |\n| --- | --- |")
    for name, value in sizes.items():
        print(f"| {name} | {value:.1f} |" if value is not None else f"| {name} | (pip failed) |")
    print(json.dumps({"accuracy": accuracy, "flavours": flavours, "latency": latency, "cold": cold, "fetched": fetched, "throughput": throughput, "sizes": sizes}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
