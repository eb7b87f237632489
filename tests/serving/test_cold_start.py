"""What a cold container pays, and when: the model, FastAPI's app and Mangum's handler are all
made at import, in Lambda's init phase (full CPU, and what a SnapStart snapshot holds), so the
first invocation finds them ready; torch and botocore are never imported for a request."""

import subprocess
import sys

from tests.factories import REPO_ROOT

PROBE = """
import sys
from tests.serving.events import FakeContext, http_api_v2
from intentflow_serving import app
at_init = set(sys.modules)
first = app.handler(http_api_v2("POST", "/classify", {"text": "play some jazz"}), FakeContext())
print(first["statusCode"], app.store.current is not None, *(name in at_init for name in ("fastapi", "mangum")),
      *(name in sys.modules for name in ("torch", "transformers", "boto3", "botocore")))
print(" ".join(sorted(set(sys.modules) - at_init)) or "-")
"""


def run_probe(model_file, **env) -> list[list[str]]:
    # The serving package from the development install; tests.serving.events from the repository (cwd).
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, env={"MODEL_URI": str(model_file), "PATH": "/usr/bin:/bin", **env},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return [line.split() for line in out.stdout.strip().splitlines()[-2:]]


def test_init_loads_the_model_and_builds_the_app_and_the_handler(model_file):
    first, _ = run_probe(model_file)
    # 200; the model, FastAPI and Mangum were there before the first invocation; no torch,
    # transformers, boto3 or botocore (the S3 reads are signed without them, intentflow_serving.aws).
    assert first == ["200", "True", "True", "True", "False", "False", "False", "False"]


def test_the_first_invocation_imports_nothing_init_could_have(model_file):
    _, imported = run_probe(model_file)
    assert imported == ["-"], f"imported by the first request rather than at init: {imported}"
