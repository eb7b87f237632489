"""Load runs with real servers: the serving app under wrk, and the Django API under concurrent clients.

    python -m bench.load [--model var/models/demo.pt] [--serving-seconds 60] [--api-seconds 30] [--api-clients 16]
                         [--database-url postgres://postgres@127.0.0.1:5432/NAME]

Needs `wrk` (Debian: apt-get install wrk). Without --model it fine-tunes the default encoder on the
demo data set for a model of the real size. The serving app runs under uvicorn (2 workers) with its
review sink pointed at Django, so low-confidence traffic also loads the ingestion endpoint; Django
runs under gunicorn with DEBUG off, on SQLite by default (the embedded default) or on the
PostgreSQL database given. A run passes when no answer is a 5xx, no connection fails, and every
request gets the status its input deserves (a bad input a 400, never a 500).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from bench.common import argument_parser, header, keep_report
from bench.common import REPO_ROOT as ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited; see {log}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not come up; see {log}")


def build_model(work: Path, model: str | None) -> Path:
    """The ONNX export serving reads, of the given .pt or of a model trained on the demo data."""
    from mlcore.onnx_export import export_onnx

    if model is None:
        from mlcore.config import TrainConfig
        from mlcore.data import load_labeled_data
        from mlcore.train import train

        print("training the default encoder on the demo data set for the load run...", flush=True)
        model = str(work / "demo.pt")
        train(TrainConfig(epochs=3), load_labeled_data(ROOT / "data/demo/intents.csv")).save(model)
    return export_onnx(model, work / "model.onnx")


def django_env(work: Path, database_url: str | None) -> dict:
    return {**os.environ, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0", "VAR_DIR": str(work / "var"), "LOG_LEVEL": "WARNING",
            "DATABASE_URL": database_url or f"sqlite:///{work / 'django.sqlite3'}", "PYTHONUNBUFFERED": "1"}


def django_tokens(env: dict) -> dict[str, str]:
    """Demo users and data; tokens for the serving app's reporter, a Labeler and an ML engineer."""
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
    token_file = Path(env["VAR_DIR"]) / "reporter-token"
    subprocess.run([*manage, "demo_setup", "--data", "data/demo/intents.csv", "--token-file", str(token_file)],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    code = ("from rest_framework.authtoken.models import Token; from django.contrib.auth.models import User; "
            "print(Token.objects.get_or_create(user=User.objects.get(username='labeler'))[0].key); "
            "print(Token.objects.get_or_create(user=User.objects.get(username='engineer'))[0].key)")
    out = subprocess.run([*manage, "shell", "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.split()
    return {"reporter": token_file.read_text().strip(), "labeler": out[-2], "engineer": out[-1]}


def start(name: str, args: list[str], env: dict, work: Path) -> tuple[subprocess.Popen, Path]:
    log = work / f"{name}.log"
    with log.open("w") as output:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def run_wrk(url: str, seconds: int, connections: int, threads: int = 2) -> dict:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(ROOT / "bench/wrk_classify.lua"), url],
                         capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", line)}


# -- the Django API under concurrent clients ------------------------------------------------------

def review_event(text: str) -> dict:
    return {"prediction_id": str(uuid.uuid4()), "text": text, "model_version": "load0000test", "threshold": 0.7,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "distribution": [{"intent": "get_news", "probability": 0.45}, {"intent": "play_music", "probability": 0.35},
                             {"intent": "get_weather", "probability": 0.2}]}


def api_operations(tokens: dict[str, str]):
    """(name, weight, method, path, token, body factory, the statuses that are right)."""
    counter = iter(range(10**9))
    return [
        ("list utterances", 30, "GET", lambda: f"/api/v1/utterances/?page={random.randint(1, 5)}", tokens["engineer"], None, {200}),
        ("list intents", 15, "GET", lambda: "/api/v1/intents/", tokens["labeler"], None, {200}),
        ("ingest review item", 30, "POST", lambda: "/api/v1/review-items/", tokens["reporter"],
         lambda: review_event(f"load test question number {next(counter)}"), {201}),
        ("label an utterance", 10, "POST", lambda: "/api/v1/utterances/", tokens["labeler"],
         lambda: {"text": f"load test utterance {uuid.uuid4().hex}", "intent": "get_news"}, {201}),
        ("list training runs", 5, "GET", lambda: "/api/v1/training-runs/", tokens["engineer"], None, {200}),
        ("bad review item (no offset, impossible date)", 10, "POST", lambda: "/api/v1/review-items/", tokens["reporter"],
         lambda: {**review_event("bad time"), "time": random.choice(["2026-02-30T00:00:00+00:00", "2026-11-30T03:00:00"])}, {400}),
    ]


def api_load(port: int, tokens: dict[str, str], seconds: float, clients: int) -> dict:
    operations = api_operations(tokens)
    weights = [op[1] for op in operations]
    results: dict[str, list] = {op[0]: [] for op in operations}
    wrong: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            name, _, method, path, token, body, good = random.choices(operations, weights)[0]
            payload = json.dumps(body()).encode() if body else None
            headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
            started = time.perf_counter()
            try:
                connection.request(method, path(), body=payload, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status = f"{type(exc).__name__}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            elapsed = time.perf_counter() - started
            with lock:
                results[name].append(elapsed)
                if status not in good:
                    wrong.append(f"{name}: {status}")
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(len(samples) for samples in results.values())
    return {"seconds": seconds, "clients": clients, "requests": total, "rps": total / seconds, "wrong": wrong,
            "per_operation": {name: {"requests": len(s), "p50_ms": statistics.median(s) * 1000 if s else None,
                                     "p99_ms": sorted(s)[int(0.99 * (len(s) - 1))] * 1000 if s else None}
                              for name, s in results.items()}}


def main() -> None:
    parser = argument_parser("load", __doc__, "section 10 (and its row in section 9)")
    parser.add_argument("--model", help="a .pt artifact to serve (default: train one on the demo data)")
    parser.add_argument("--serving-seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--api-seconds", type=int, default=30)
    parser.add_argument("--api-clients", type=int, default=16)
    parser.add_argument("--database-url", help="PostgreSQL for Django (default: a SQLite file)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    keep_report("load", args.output)
    work = Path(tempfile.mkdtemp(prefix="intentflow-load-"))
    processes = []
    try:
        onnx = build_model(work, args.model)
        env = django_env(work, args.database_url)
        tokens = django_tokens(env)
        django_port, serving_port = free_port(), free_port()
        django, django_log = start("django", [str(BIN / "gunicorn"), "webapp.wsgi", "-b", f"127.0.0.1:{django_port}",
                                              "-w", "2", "--threads", "4", "--timeout", "60"], env, work)
        processes.append(django)
        wait_for(f"http://127.0.0.1:{django_port}/admin/login/", django, django_log)
        serving_env = {**os.environ, "MODEL_URI": str(onnx), "REVIEW_SINK": "http", "INFERENCE_THREADS": "1",
                       "REVIEW_API_URL": f"http://127.0.0.1:{django_port}/api/v1/review-items/", "REVIEW_API_TOKEN": tokens["reporter"]}
        serving, serving_log = start("serving", [str(BIN / "uvicorn"), "intentflow_serving.app:app", "--host", "127.0.0.1",
                                                 "--port", str(serving_port), "--workers", "2", "--log-level", "warning"], serving_env, work)
        processes.append(serving)
        wait_for(f"http://127.0.0.1:{serving_port}/health", serving, serving_log)
        print(f"wrk: POST /classify for {args.serving_seconds} s, {args.connections} connections...", flush=True)
        classify = run_wrk(f"http://127.0.0.1:{serving_port}/classify", args.serving_seconds, args.connections)
        health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{serving_port}/health"))
        print(f"Django API: {args.api_clients} clients for {args.api_seconds} s...", flush=True)
        api = api_load(django_port, tokens, args.api_seconds, args.api_clients)
    finally:
        for process in processes:
            stop(process)
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(header("Load: the serving app under wrk, the Django API under concurrent clients"))
    print(f"### Serving: `POST /classify` under wrk, uvicorn with 2 workers, {args.connections} connections, {args.serving_seconds} s\n")
    print("| requests | requests/s | p50 | p99 | 5xx | 4xx | socket errors | review events delivered / undelivered (one worker) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {classify['requests']:.0f} | {classify['rps']:.1f} | {classify['p50_ms']:.2f} ms | {classify['p99_ms']:.2f} ms | "
          f"{classify['5xx']:.0f} | {classify['4xx']:.0f} | {classify['socket_errors']:.0f} | "
          f"{health['review']['delivered']} / {health['review']['undelivered']} |\n")
    print(f"### Django API under gunicorn (2 workers × 4 threads, DEBUG off, {backend}), {api['clients']} clients, {api['seconds']} s\n")
    print("| operation | requests | p50 | p99 |")
    print("|---|---:|---:|---:|")
    for name, figures in api["per_operation"].items():
        if figures["requests"]:
            print(f"| {name} | {figures['requests']} | {figures['p50_ms']:.1f} ms | {figures['p99_ms']:.1f} ms |")
    print(f"| **all** | {api['requests']} ({api['rps']:.1f}/s) | | |\n")
    print(f"Wrong answers (a 5xx, a failed connection, or a status the input does not deserve): {len(api['wrong'])}"
          + (f" — {sorted(set(api['wrong']))[:10]}" if api["wrong"] else ""))
    shutil.rmtree(work, ignore_errors=True)
    failed = classify["5xx"] or classify["socket_errors"] or classify["4xx"] or api["wrong"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
