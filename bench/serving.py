"""Serving benchmarks: warm latency, cold start, memory, sizes, and throughput under load.

    python bench/serving.py [--model var/models/clinc_full.pt] [--iterations 300] [--load-seconds 10]

The model is the default encoder fine-tuned on CLINC150 (section 1 of BENCHMARKS.md). Ours is
lambda/app.py serving its ONNX export through the Mangum handler with API Gateway v2 events;
the baselines serve the same weights with transformers (pipeline("text-classification")).
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "lambda"), str(ROOT / "tests" / "serving")]

from bench.common import header  # noqa: E402

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


COLD = """
import json, sys, time
sys.path[:0] = {paths!r}
from events import http_api_v2, FakeContext
import {module} as served
response = served.handler(http_api_v2("POST", "/classify", {{"text": {text!r}}}), FakeContext())
assert response["statusCode"] == 200, response
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"maxrss_mb": peak_kb / 1024,
                  "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}}))
"""


def cold_start(module: str, env: dict, runs: int) -> dict:
    code = COLD.format(paths=[str(ROOT / "lambda"), str(ROOT / "tests" / "serving"), str(ROOT / "bench"), str(ROOT)], module=module, text=TEXT)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(ROOT / "var/models/clinc_full.pt"))
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    work = ROOT / "bench" / "results" / "serving"
    work.mkdir(parents=True, exist_ok=True)

    from bench.hf_baseline import export_hf_directory
    from mlcore.onnx_export import export_onnx

    onnx_path = export_onnx(args.model, work / "model.onnx")
    hf_dir = work / "hf-model"
    shutil.rmtree(hf_dir, ignore_errors=True)
    export_hf_directory(args.model, hf_dir)
    print(header("Serving"))

    # Cold starts first, each in fresh processes, before this process warms any cache of its own.
    ours_env = {"MODEL_URI": str(onnx_path), "LOG_LEVEL": "WARNING"}
    cold_ours = cold_start("app", ours_env, args.cold_runs)
    cold_base = cold_start("baseline_app", {"BASELINE_MODEL_DIR": str(hf_dir)}, args.cold_runs)

    # Warm latency, one short utterance, all in this process.
    os.environ.update(ours_env)
    import logging

    import app
    from events import FakeContext, http_api_v2
    logging.getLogger("serving.request").setLevel(logging.WARNING)
    event = http_api_v2("POST", "/classify", {"text": TEXT})
    # The very predictor the app holds: a second onnxruntime session would add a second thread
    # pool spinning on the same two cores.
    bare_predictor = app.store.get().predictor
    # Ours and the bare call interleaved; the torch pipeline apart, since torch's OpenMP threads
    # keep spinning after each call and would slow whatever runs next.
    # The same app with POST /classify left to the FastAPI route (no fast path), for what that path buys.
    from mangum import Mangum

    routed = Mangum(app.create_app(app.settings, app.store, fast_path=False), lifespan="off")
    handler, bare, route_only = timed(lambda: app.handler(event, FakeContext()), lambda: bare_predictor.probabilities([TEXT]),
                                      lambda: routed(event, FakeContext()), iterations=args.iterations)
    from bench.hf_baseline import load_pipeline

    pipe = load_pipeline(hf_dir)
    [pipeline_latency] = timed(lambda: pipe(TEXT), iterations=args.iterations)

    # Throughput under concurrent load, uvicorn on 127.0.0.1, bounded in time.
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("uvicorn")), "--app-dir", str(ROOT / "lambda"), "app:app",
                               "--port", str(port), "--log-level", "warning"], env={**os.environ, **ours_env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.25)
        throughput = asyncio.run(load(f"http://127.0.0.1:{port}/classify", args.load_seconds, args.concurrency))
    finally:
        server.terminate()
        server.wait()

    import torch
    import transformers

    sizes = {
        "artifact_mb": Path(args.model).stat().st_size / 2**20,
        "onnx_mb": onnx_path.stat().st_size / 2**20,
        "serving_install_mb": install_size(ROOT / "lambda" / "requirements.txt"),
        "torch_mb": folder_mb(Path(torch.__file__).parent),
        "transformers_mb": folder_mb(Path(transformers.__file__).parent),
    }
    print("| warm latency, one short utterance | p50 (ms) | p95 (ms) | p99 (ms) |\n| --- | --- | --- | --- |")
    for name, figures in (("ours: Mangum handler, API Gateway v2 event", handler), ("bare model call (tokenize, forward, softmax)", bare),
                          ("ours without the fast path (the FastAPI route answers)", route_only),
                          ("baseline: transformers pipeline()", pipeline_latency)):
        print(f"| {name} | {figures['p50']:.2f} | {figures['p95']:.2f} | {figures['p99']:.2f} |")
    print(f"\nhandler p50 / bare p50 = {handler['p50'] / bare['p50']:.2f} "
          f"(without the fast path: {route_only['p50'] / bare['p50']:.2f})\n")
    print("| cold start, fresh process to first response | median (s) | best (s) | peak RSS (MB) | imports torch | imports transformers |\n| --- | --- | --- | --- | --- | --- |")
    for name, figures in (("ours (lambda/app.py, ONNX)", cold_ours), ("baseline (transformers from_pretrained + pipeline)", cold_base)):
        print(f"| {name} | {figures['median_s']:.2f} | {figures['min_s']:.2f} | {figures['maxrss_mb']:.0f} | {figures['torch']} | {figures['transformers']} |")
    print(f"\nbaseline / ours (median) = {cold_base['median_s'] / cold_ours['median_s']:.1f}x\n")
    print(f"throughput (uvicorn, 1 process, {args.concurrency} concurrent clients, {args.load_seconds:.0f} s): "
          f"{throughput['requests_per_s']:.1f} requests/s, p50 {throughput['p50']:.1f} ms, p95 {throughput['p95']:.1f} ms, "
          f"p99 {throughput['p99']:.1f} ms, {throughput['errors']} errors\n")
    print("| size | MB |\n| --- | --- |")
    for name, value in sizes.items():
        print(f"| {name} | {value:.1f} |" if value is not None else f"| {name} | (pip failed) |")
    print(json.dumps({"handler": handler, "bare": bare, "route_only": route_only, "pipeline": pipeline_latency, "cold_ours": cold_ours,
                      "cold_baseline": cold_base, "throughput": throughput, "sizes": sizes}), file=sys.stderr)


if __name__ == "__main__":
    main()
