"""A smoke run of the benchmarks (bench/): every script answers ``python -m bench.<script> --help``
from the repository root and names the BENCHMARKS.md section it measures; every module that is not a
script imports (the baseline app serves one request with a tiny model). No benchmark runs and
nothing is trained here; the subprocesses run a few at a time to keep the whole under a minute.

Also held here: the scripts edit no import path (the serving package is installed; a cold-start
process that lays out a Lambda task root is given its path), import nothing from tests/, and bench/README.md and BENCHMARKS.md name them as they are run.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = REPO_ROOT / "bench"
# Imported by the scripts, so covered by every one of them.
HELPERS = {"__init__", "common"}
TIMEOUT = 120

# bench.baseline_app loads its model when imported: serve one request with a tiny BERT.
BASELINE_SMOKE = """
import os, sys
from pathlib import Path
from tests.factories import build_tiny_bert, read_demo_rows
build_tiny_bert(Path(os.environ["BASELINE_MODEL_DIR"]), [text for text, _ in read_demo_rows()])
import bench.baseline_app as served
from bench.events import FakeContext, http_api_v2
response = served.handler(http_api_v2("POST", "/classify", {"text": "what is the weather"}), FakeContext())
assert response["statusCode"] == 200, response
"""


def modules() -> list[str]:
    return sorted(path.stem for path in BENCH.glob("*.py") if path.stem not in HELPERS)


def is_script(name: str) -> bool:
    return any(isinstance(node, ast.If) and ast.unparse(node.test) in ("__name__ == '__main__'", '__name__ == "__main__"')
               for node in ast.parse((BENCH / f"{name}.py").read_text()).body)


def smoke(name: str, tmp_path: Path) -> tuple[list[str], dict[str, str], str | None]:
    """The command that smoke-tests one module, its environment, and what its stdout must contain."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BASELINE_MODEL_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    if is_script(name):
        return [sys.executable, "-m", f"bench.{name}", "--help"], env, "BENCHMARKS.md"
    if name == "baseline_app":
        return [sys.executable, "-c", BASELINE_SMOKE], {**env, "BASELINE_MODEL_DIR": str(tmp_path / "tiny-bert")}, None
    return [sys.executable, "-c", f"import bench.{name}"], env, None


def test_bench_has_scripts_and_modules():
    names = modules()
    assert len([name for name in names if is_script(name)]) >= 15, names
    assert {"baseline_app", "hf_baseline", "events"} <= {name for name in names if not is_script(name)}


def test_every_script_answers_help_and_every_module_imports(tmp_path):
    jobs = {name: smoke(name, tmp_path) for name in modules()}

    def run(name: str) -> str | None:
        command, env, expected = jobs[name]
        try:
            done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"{name}: no answer within {TIMEOUT} s"
        if done.returncode != 0:
            return f"{name}: exit status {done.returncode}\n{done.stderr[-2000:]}"
        if expected is not None and expected not in done.stdout:
            return f"{name}: --help does not mention {expected}:\n{done.stdout[-2000:]}"
        return None

    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        failures = [failure for failure in pool.map(run, jobs) if failure]
    assert not failures, "\n\n".join(failures)


def test_no_script_edits_the_import_path_and_nothing_comes_from_tests():
    for path in sorted(BENCH.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.path":
                raise AssertionError(f"{path.name}:{node.lineno} uses sys.path: import the serving package, intentflow_serving, by name")
            imported = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name == "tests" or name.startswith("tests.") for name in imported), f"{path.name}:{node.lineno} imports from tests"


def test_readme_and_benchmarks_name_the_scripts_as_they_are_run():
    readme = (BENCH / "README.md").read_text()
    missing = [name for name in modules() if f"`{name}`" not in readme and f"`{name}.py`" not in readme]
    assert not missing, f"bench/README.md does not list {missing}"
    unrun = [name for name in modules() if is_script(name) and f"python -m bench.{name}" not in readme]
    assert not unrun, f"bench/README.md gives no `python -m bench.<script>` command for {unrun}"
    benchmarks = (REPO_ROOT / "BENCHMARKS.md").read_text()
    assert "python bench/" not in benchmarks, "BENCHMARKS.md quotes a command as `python bench/<script>.py`: run it as `python -m bench.<script>`"
