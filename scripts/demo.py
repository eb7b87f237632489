"""`make demo`: the whole system on embedded defaults, with one command.

Migrates the SQLite database, creates the demo users and loads the demo data set, starts a
django-q2 worker and the Django server, trains and promotes a model through the worker (first
run only), starts the serving app under uvicorn with its review sink pointed at Django, prints a
few predictions, the URLs and the login. Ctrl-C stops everything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PY = sys.executable
ADMIN, SERVING = "http://127.0.0.1:8000", "http://127.0.0.1:8001"
SAMPLES = ["show me today's news", "update my profile", "is the shop open on sunday", "what is the meaning of life"]

children: list[subprocess.Popen] = []


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(*args: str, env: dict) -> None:
    subprocess.run([PY, *args], cwd=ROOT, env=env, check=True)


def start(name: str, args: list[str], env: dict) -> subprocess.Popen:
    log = (VAR / "demo").joinpath(f"{name}.log").open("w")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children.append(process)
    print(f"started {name} (pid {process.pid}, log var/demo/{name}.log)", flush=True)
    return process


def wait_for(url: str, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{name} did not come up at {url}; see var/demo/{name}.log")


def stop_all(*_) -> None:
    print("\nstopping...", flush=True)
    # SIGTERM to each leader only: qcluster stops its own pusher, workers and monitor in order (in
    # about a second), and hangs if they get the signal too. Whatever is left in a group then goes.
    for process in children:
        if process.poll() is None:
            process.terminate()
    for process in children:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group has exited
    print("stopped.", flush=True)
    sys.exit(0)


def main() -> None:
    (VAR / "demo").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEBUG": "1", "PYTHONUNBUFFERED": "1"}
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)

    step("database, demo users and demo data")
    run("manage.py", "migrate", "--no-input", "-v", "0", env=env)
    token_file = VAR / "demo" / "serving-token"
    run("manage.py", "demo_setup", "--data", "data/demo/intents.csv", "--token-file", str(token_file), env=env)

    step("worker and admin")
    # Two queues: training runs, and the short jobs (promotions, the review drain, the sweep).
    start("qcluster-training", [PY, "manage.py", "qcluster"], {**env, "Q_CLUSTER_NAME": "intentflow-training"})
    start("qcluster", [PY, "manage.py", "qcluster"], env)
    start("django", [PY, "manage.py", "runserver", "127.0.0.1:8000", "--noreload"], env)
    wait_for(ADMIN + "/admin/login/", "django")

    onnx = VAR / "serving" / "model.onnx"
    if not onnx.exists():
        step("training the first model in the worker (about a minute on 2 CPUs), then promoting it")
        run("manage.py", "train", "--wait", "--promote", "--user", "engineer", env=env)
    else:
        print(f"a promoted model is already at {onnx.relative_to(ROOT)}; retrain from the admin")

    step("serving app")
    serving_env = {**env, "MODEL_URI": str(onnx), "REVIEW_SINK": "http", "REVIEW_API_URL": ADMIN + "/api/v1/review-items/",
                   "REVIEW_API_TOKEN": token_file.read_text().strip(), "REVIEW_TIMEOUT_MS": "500",
                   # Demo traffic is a handful of requests: audit a quarter of them, sample half of the
                   # confident ones and report counts at once, so the index's live-accuracy estimate, the
                   # Traffic page and the traffic samples (which the next retrain self-trains on) show something.
                   "REVIEW_AUDIT_RATE": "0.25", "TRAFFIC_SAMPLE_RATE": "0.5", "TRAFFIC_REPORT_SECONDS": "0"}
    start("serving", [str(Path(PY).with_name("uvicorn")), "intentflow_serving.app:app", "--host", "127.0.0.1", "--port", "8001"], serving_env)
    wait_for(SERVING + "/health", "serving")

    step("a few predictions through the serving app")
    for text in SAMPLES:
        request = urllib.request.Request(SERVING + "/classify", data=json.dumps({"text": text}).encode(), headers={"content-type": "application/json"})
        answer = json.load(urllib.request.urlopen(request, timeout=10))
        flag = "  -> sent to the review queue" if answer["low_confidence"] else ""
        print(f"  {text!r}: {answer['intent']} ({answer['confidence']:.3f}){flag}")

    step("running")
    print(f"  admin:    {ADMIN}/admin/   (API docs: {ADMIN}/api/docs/; traffic: {ADMIN}/admin/review/reviewitem/traffic/)")
    print(f"  labeling: {ADMIN}/admin/review/reviewitem/label/   (the review queue from the keyboard: 1 2 3, o, d, s, u, /)")
    print(f"  samples:  {ADMIN}/admin/review/trafficsample/   (confident traffic the next retrain self-trains on)")
    print(f"  serving:  {SERVING}/classify   (POST {{\"text\": ...}}; {SERVING}/docs)")
    print("  workers:  django-q2 qcluster x2: training runs, and promotions + review drain + grouping (ORM broker, SQLite)")
    print(f"  login:    admin, labeler or engineer; password in {VAR.relative_to(ROOT)}/demo/password")
    print("Press Ctrl-C to stop everything.", flush=True)
    while True:
        for process in children:
            if process.poll() is not None:
                print(f"a process exited ({process.args[1] if len(process.args) > 1 else process.args[0]}); stopping the rest")
                stop_all()
        time.sleep(1)


if __name__ == "__main__":
    main()
