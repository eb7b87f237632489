"""The deployment files: the SAM template passes cfn-lint and wires what the app reads; the zip and
the image hold lambda/build.py's files and lambda/requirements.lock's packages, on one Python."""

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from tests.factories import REPO_ROOT
from tests.test_architecture import load_build_script


def test_the_sam_template_passes_cfn_lint():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), str(REPO_ROOT / "template.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _template() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader, suffix, node):
        """CloudFormation's short forms (!Ref X, !Or [...]) as their long forms ({"Ref": X}, {"Fn::Or": [...]})."""
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", intrinsic)
    return yaml.load((REPO_ROOT / "template.yaml").read_text(), Loader=Loader)


def rules_hold(template: dict, **overrides: str) -> bool:
    """Evaluate the template's Rules as CloudFormation would, for these parameter values."""
    parameters = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()} | overrides
    functions = {
        "Ref": lambda name: parameters[name],
        "Fn::Equals": lambda args: value(args[0]) == value(args[1]),
        "Fn::Not": lambda args: not value(args[0]),
        "Fn::Or": lambda args: any(value(a) for a in args),
        "Fn::And": lambda args: all(value(a) for a in args),
    }

    def value(node):
        if isinstance(node, dict):
            [(name, argument)] = node.items()
            return functions[name](argument)
        return node

    return all(value(a["Assert"]) for rule in template["Rules"].values() for a in rule["Assertions"])


def test_an_endpoint_without_keys_must_be_asked_for():
    template = _template()
    assert template["Parameters"]["AllowAnonymous"]["Default"] == "false"
    assert not rules_hold(template)  # the defaults: no keys, and anonymous access not chosen
    assert rules_hold(template, ApiKeys="k1,k2")
    assert rules_hold(template, AllowAnonymous="true")
    assert not rules_hold(template, ApiKeys="", AllowAnonymous="false")


def test_the_http_api_is_throttled_with_the_limits_given_as_parameters():
    template = _template()
    settings = template["Resources"]["Api"]["Properties"]["DefaultRouteSettings"]
    assert settings == {"ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"}, "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"}}
    for name in ("ThrottlingRateLimit", "ThrottlingBurstLimit"):
        assert template["Parameters"][name]["Type"] == "Number" and template["Parameters"][name]["Default"] >= 1
    for function in ("ClassifyFunction", "ClassifyZipFunction"):  # every route of both functions is on that API
        [event] = template["Resources"][function]["Properties"]["Events"].values()
        assert event["Type"] == "HttpApi" and event["Properties"]["ApiId"] == {"Ref": "Api"}


def test_the_function_gets_the_settings_the_app_reads():
    from intentflow_serving.config import ServingSettings

    template = _template()
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(environment) <= {name.upper() for name in ServingSettings.model_fields}
    assert {"MODEL_URI", "MODEL_REFRESH_SECONDS", "API_KEYS", "CONFIDENCE_THRESHOLD", "REVIEW_SINK", "REVIEW_QUEUE_URL", "REVIEW_ROUTING", "TRAFFIC_SAMPLE_RATE"} <= set(environment)
    assert template["Parameters"]["ReviewRouting"]["AllowedValues"] == list(ServingSettings.model_fields["review_routing"].annotation.__args__)
    assert environment["REVIEW_SINK"] == "sqs" and template["Parameters"]["ModelKey"]["Default"].endswith(".onnx")
    image, zipped = (template["Resources"][name]["Properties"] for name in ("ClassifyFunction", "ClassifyZipFunction"))
    assert image["PackageType"] == "Image" and zipped["PackageType"] == "Zip"
    assert zipped["SnapStart"] == {"ApplyOn": "PublishedVersions"} and zipped["Handler"] == build_script.HANDLER
    for function in (image, zipped):
        assert [next(iter(policy)) for policy in function["Policies"]] == ["S3ReadPolicy", "SQSSendMessagePolicy"]


# -- The package: lambda/build.py's files, lambda/requirements.lock's packages, Python 3.12 -------

build_script = load_build_script()
LAMBDA_ROOT = REPO_ROOT / "lambda"
# The serving path's part of mlcore, and modules of mlcore it must never hold (training, the torch
# backend, the command line): lambda/build.py finds the first in the source.
INFERENCE_MODULES = {"__init__", "errors", "files", "metrics", "ood", "prediction", "onnx_predictor"}
NOT_INFERENCE = {"train", "modeling", "predictor", "cli", "__main__", "onnx_export", "quantize", "self_training", "data"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements() -> list[Requirement]:
    lines = (LAMBDA_ROOT / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in map(str.strip, lines) if line and not line.startswith("#")]


def _lock() -> tuple[dict[str, str], list[str]]:
    """lambda/requirements.lock: {canonical name: version}, and its comment lines."""
    pins, comments = {}, []
    for line in (LAMBDA_ROOT / "requirements.lock").read_text().splitlines():
        if line.startswith("#"):
            comments.append(line)
        elif line.strip():
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
            assert match, f"not a pin: {line!r}"
            assert _canonical(match[1]) not in pins, f"pinned twice: {match[1]}"
            pins[_canonical(match[1])] = match[2]
    return pins, comments


def _dockerfile() -> str:
    return (LAMBDA_ROOT / "Dockerfile").read_text()


def _make_recipe(target: str) -> list[str]:
    lines = (REPO_ROOT / "Makefile").read_text().splitlines()
    recipe = []
    for line in lines[lines.index(f"{target}:") + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def _run_build(out: Path, *args: str) -> subprocess.CompletedProcess:
    """python lambda/build.py OUT, as make lambda-zip and the image build run it: without site
    (-S: the standard library alone) and outside the repository."""
    return subprocess.run([sys.executable, "-S", str(LAMBDA_ROOT / "build.py"), *args, str(out)], cwd=out.parent,
                          capture_output=True, text=True, timeout=120)


def _function_python() -> str:
    """template.yaml's Runtime for the zip package, as a version: python3.12 -> 3.12."""
    runtime = _template()["Resources"]["ClassifyZipFunction"]["Properties"]["Runtime"]
    assert runtime.startswith("python"), runtime
    return runtime.removeprefix("python")


def test_the_zip_and_the_image_are_made_by_the_build_script():
    """One list of files for both: lambda/build.py lays out the zip (make lambda-zip) and, inside the
    image build, the task root; neither copies the mlcore folder (or lambda's) as it is."""
    dockerfile = _dockerfile()
    assert re.search(r"^RUN python /src/lambda/build\.py (\S+)$", dockerfile, re.M)
    out = re.search(r"^RUN python /src/lambda/build\.py (\S+)$", dockerfile, re.M)[1]
    assert re.search(rf"^COPY --from=\w+ {re.escape(out)}/ \$\{{LAMBDA_TASK_ROOT\}}/$", dockerfile, re.M)
    copies = [line.split()[1:] for line in dockerfile.splitlines() if line.startswith("COPY") and "--from" not in line]
    assert not [c for c in copies if "LAMBDA_TASK_ROOT" in c[-1]], "the task root gets lambda/build.py's files alone"
    # What the image build copies, the build context holds (.dockerignore sends lambda/ and mlcore/ alone).
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert {source.split("/")[0] for *sources, _ in copies for source in sources} == {"lambda", "mlcore"}
    assert {"*", "!lambda/", "!mlcore/"} <= set(ignore)

    recipe = _make_recipe("lambda-zip")
    assert recipe[0] == "rm -rf build/lambda-zip"
    assert any(re.fullmatch(r"\$\(PYTHON\) lambda/build\.py( --no-compile)? build/lambda-zip", line) for line in recipe), recipe
    assert "cp lambda/requirements.lock build/lambda-zip/requirements.txt" in recipe  # what sam build installs
    assert not [line for line in recipe if "mlcore" in line or "lambda/*.py" in line]
    assert _template()["Resources"]["ClassifyZipFunction"]["Properties"]["CodeUri"] == "build/lambda-zip"


def test_the_build_holds_the_serving_modules_and_only_the_inference_part_of_mlcore(tmp_path):
    out = tmp_path / "package"
    result = _run_build(out)
    assert result.returncode == 0, result.stderr
    built = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.py"))
    # lambda/'s files as they lie there: the one-line handler.py and the whole serving package.
    serving = sorted(path.relative_to(LAMBDA_ROOT).as_posix() for path in LAMBDA_ROOT.rglob("*.py") if path.name != "build.py")
    assert "handler.py" in serving and "intentflow_serving/app.py" in serving
    assert [name for name in built if not name.startswith("mlcore/")] == serving
    mlcore = {Path(name).stem for name in built if name.startswith("mlcore/")}
    assert INFERENCE_MODULES <= mlcore and not mlcore & NOT_INFERENCE, sorted(mlcore)
    assert {name.split("/")[0] for name in built} == {"handler.py", build_script.SERVING_PACKAGE, "mlcore"}
    assert set(result.stdout.split()) >= set(built)  # it says what it copied
    for name in built:  # copied as they are, and none imports torch or the like at module level
        assert (out / name).read_bytes() == (REPO_ROOT / (name if name.startswith("mlcore/") else "lambda/" + name)).read_bytes()
        tree = ast.parse((out / name).read_text())
        top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
        top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
        assert not top & build_script.NOT_IN_SERVING, (name, top & build_script.NOT_IN_SERVING)
        # byte-compiled, by this Python here (the image's is the function's)
        assert Path(importlib.util.cache_from_source(str(out / name))).is_file(), name
    # Run again into the same folder, it refuses: a module left from an older build would stay.
    again = _run_build(out)
    assert again.returncode != 0 and "remove it first" in again.stderr


def test_the_build_refuses_a_module_that_imports_torch(tmp_path):
    """A serving module reaching an mlcore module that imports torch at module level stops the build,
    with the import and the chain of imports that reaches it."""
    root = tmp_path / "repo"
    (root / "lambda" / "serving").mkdir(parents=True)
    (root / "mlcore").mkdir()
    shutil.copy(LAMBDA_ROOT / "build.py", root / "lambda" / "build.py")
    (root / "lambda" / "handler.py").write_text("from serving.app import handler  # noqa: F401\n")
    (root / "lambda" / "serving" / "__init__.py").write_text("")
    (root / "lambda" / "serving" / "app.py").write_text("from mlcore.light import f\n")
    (root / "mlcore" / "__init__.py").write_text("")
    (root / "mlcore" / "light.py").write_text("def f():\n    from mlcore import heavy\n")
    (root / "mlcore" / "heavy.py").write_text('"""Trains."""\n\nimport torch\n')
    result = subprocess.run([sys.executable, "-S", str(root / "lambda" / "build.py"), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "mlcore/heavy.py:3 imports torch at module level (reached by serving.app -> mlcore.light -> mlcore.heavy)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_files_the_build_lays_out_are_enough_to_serve(model_file, tmp_path):
    """Lay out the task root with lambda/build.py and serve a request from it, as Lambda imports it
    (the task root on sys.path, isolated from this environment's paths), without torch."""
    from tests.serving.events import http_api_v2

    task_root = tmp_path / "task"
    result = _run_build(task_root)
    assert result.returncode == 0, result.stderr
    # The Handler setting, resolved as the runtime resolves it: the module imported from the task
    # root (handler.py, one line), then its attribute.
    module, function = _template()["Resources"]["ClassifyZipFunction"]["Properties"]["Handler"].rsplit(".", 1)
    code = ("import importlib, json, sys; sys.path.insert(0, sys.argv[1])\n"
            "handler = getattr(importlib.import_module(sys.argv[2]), sys.argv[3])\n"
            "class Context:\n"
            "    function_name, memory_limit_in_mb, aws_request_id = 'intentflow-classify', 2048, 'request-1'\n"
            "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:intentflow-classify'\n"
            "    def get_remaining_time_in_millis(self): return 30000\n"
            "r = handler(json.load(sys.stdin), Context())\n"
            "ours = {name: m.__file__ for name, m in sys.modules.items() if name.split('.')[0] in sys.argv[4:]}\n"
            "print(r['statusCode'], 'torch' in sys.modules or 'transformers' in sys.modules,\n"
            "      all(path.startswith(sys.argv[1]) for path in ours.values()), ours)\n")
    # Every module of ours from the task root (handler, intentflow_serving, mlcore): the development
    # install's finder would otherwise load a module the build left out from the repository, and the
    # test would pass without it.
    ours = sorted({path.relative_to(task_root).parts[0].removesuffix(".py") for path in task_root.rglob("*.py")})
    assert ours == ["handler", build_script.SERVING_PACKAGE, "mlcore"]
    out = subprocess.run([sys.executable, "-I", "-c", code, str(task_root), module, function, *ours],
                         input=json.dumps(http_api_v2("POST", "/classify", {"text": "hi"})), cwd=tmp_path,
                         env={"MODEL_URI": str(model_file), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[:3] == ["200", "False", "True"], out.stdout + out.stderr[-2000:]


def test_the_image_and_the_zip_run_the_same_python():
    """template.yaml's zip Runtime, the image's base (every stage of it) and the lock's Python are one
    version, 3.12 or later: SnapStart for Python needs python3.12 or later."""
    python = _function_python()
    assert tuple(map(int, python.split("."))) >= (3, 12)
    assert build_script.LAMBDA_PYTHON == python
    bases = re.findall(r"^FROM (\S+)", _dockerfile(), re.M)
    assert bases and set(bases) == {f"public.ecr.aws/lambda/python:{python}"}, bases
    _, comments = _lock()
    assert f"# python-version: {python}" in comments
    assert any(f"--python-version {python}" in line for line in comments)  # how it was resolved


def test_the_dockerfile_builds_the_handler_from_the_lambda_base_image():
    dockerfile = _dockerfile()
    assert "torch" not in dockerfile.replace("no torch", "") and f'CMD ["{build_script.HANDLER}"]' in dockerfile
    # It installs the lock, not the loose list.
    installs = [line for line in dockerfile.splitlines() if line.startswith("RUN pip install")]
    assert len(installs) == 1 and "-r /tmp/requirements.lock" in installs[0], installs
    assert "COPY lambda/requirements.lock /tmp/requirements.lock" in dockerfile
    assert "requirements.txt" not in dockerfile
    packages = {_canonical(requirement.name) for requirement in _requirements()}
    assert packages == {"fastapi", "starlette", "mangum", "pydantic", "tokenizers", "numpy", "onnxruntime", "orjson", "botocore"}


def test_the_handler_setting_names_the_one_line_handler_module():
    """One Handler for both: template.yaml's (the zip) and the image's CMD name lambda/handler.py's
    ``handler``, a module of one line that imports the serving package's (Mangum over its app)."""
    assert _template()["Resources"]["ClassifyZipFunction"]["Properties"]["Handler"] == build_script.HANDLER
    assert re.findall(r"^CMD (.+)$", _dockerfile(), re.M) == [json.dumps([build_script.HANDLER])]
    module, function = build_script.HANDLER.rsplit(".", 1)
    source = (LAMBDA_ROOT / f"{module}.py").read_text()
    [statement] = ast.parse(source).body
    assert len(source.strip().splitlines()) == 1 and isinstance(statement, ast.ImportFrom)
    assert (statement.module, [(alias.name, alias.asname) for alias in statement.names]) == (
        f"{build_script.SERVING_PACKAGE}.app", [(function, None)])


def test_the_lock_pins_every_requirement():
    """Each package of requirements.txt is pinned in the lock, at a version its range admits (the lock
    holds their dependencies too: `python lambda/build.py --lock` writes it with pip)."""
    pins, _ = _lock()
    for requirement in _requirements():
        name = _canonical(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in lambda/requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (str(requirement), pins[name])
    assert len(pins) > len(_requirements())  # the dependencies as well
    assert not set(pins) & {"torch", "transformers", "datasets", "django"}


def test_the_lock_holds_every_package_the_served_code_imports():
    """Every outside package that the built files import (at any level) is pinned: botocore was
    missing from the list once. torch is imported only by the torch backend, which the build leaves out."""
    from importlib.metadata import packages_distributions

    graph = build_script.ImportGraph(REPO_ROOT)
    modules = graph.serving_modules()
    imported = {i.target for i in graph.imports if i.importer in modules and not i.internal}
    outside = imported - set(sys.stdlib_module_names) - {"__future__"} - build_script.NOT_IN_SERVING
    distributions = packages_distributions()
    pins, _ = _lock()
    missing = {name for name in outside if not {_canonical(d) for d in distributions.get(name, [name])} & set(pins)}
    assert not missing, f"imported by the serving code, not in lambda/requirements.lock: {sorted(missing)}"
    assert {"botocore", "onnxruntime", "tokenizers", "fastapi", "numpy"} <= outside
