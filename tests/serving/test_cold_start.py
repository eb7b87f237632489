"""What a cold container pays before its first answer: FastAPI is imported only when a request
needs it (an error, another route), never for an ordinary POST /classify on the fast path."""

import subprocess
import sys

from tests.factories import REPO_ROOT

PROBE = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from events import FakeContext, http_api_v2
import app
first = app.handler(http_api_v2("POST", "/classify", {"text": "play some jazz"}), FakeContext())
print(first["statusCode"], "fastapi" in sys.modules, "torch" in sys.modules, "mangum" in sys.modules, "boto3" in sys.modules)
health = app.handler(http_api_v2("GET", "/health"), FakeContext())
print(health["statusCode"], "fastapi" in sys.modules)
"""


def run_probe(model_file, **env) -> list[list[str]]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO_ROOT / "lambda"), str(REPO_ROOT / "tests" / "serving")],
                         cwd=REPO_ROOT, env={"MODEL_URI": str(model_file), "PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return [line.split() for line in out.stdout.strip().splitlines()[-2:]]


def test_the_first_answer_imports_neither_fastapi_nor_torch(model_file):
    first, health = run_probe(model_file)
    assert first == ["200", "False", "False", "False", "False"]  # nor Mangum, nor boto3
    assert health == ["200", "True"]  # another route builds the FastAPI app, and answers


def test_without_the_fast_path_the_app_is_built_for_the_first_request(model_file):
    first, _ = run_probe(model_file, FAST_PATH="0")
    assert first[:3] == ["200", "True", "False"]
