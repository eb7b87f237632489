"""The deployment files: the SAM template passes cfn-lint and wires what the app reads."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.factories import REPO_ROOT


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
    from serving_config import ServingSettings

    template = _template()
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(environment) <= {name.upper() for name in ServingSettings.model_fields}
    assert {"MODEL_URI", "MODEL_REFRESH_SECONDS", "API_KEYS", "CONFIDENCE_THRESHOLD", "REVIEW_SINK", "REVIEW_QUEUE_URL", "REVIEW_ROUTING", "TRAFFIC_SAMPLE_RATE"} <= set(environment)
    assert template["Parameters"]["ReviewRouting"]["AllowedValues"] == list(ServingSettings.model_fields["review_routing"].annotation.__args__)
    assert environment["REVIEW_SINK"] == "sqs" and template["Parameters"]["ModelKey"]["Default"].endswith(".onnx")
    image, zipped = (template["Resources"][name]["Properties"] for name in ("ClassifyFunction", "ClassifyZipFunction"))
    assert image["PackageType"] == "Image" and zipped["PackageType"] == "Zip"
    assert zipped["SnapStart"] == {"ApplyOn": "PublishedVersions"} and zipped["Handler"] == "app.handler"
    for function in (image, zipped):
        assert [next(iter(policy)) for policy in function["Policies"]] == ["S3ReadPolicy", "SQSSendMessagePolicy"]


def test_the_zip_package_and_the_image_carry_the_mlcore_folder_whole():
    """One folder, no list of single files to keep in sync: both copy mlcore/ as it is."""
    dockerfile = (REPO_ROOT / "lambda" / "Dockerfile").read_text()
    assert [line for line in dockerfile.splitlines() if "mlcore" in line and line.startswith("COPY")] == ["COPY mlcore/ ${LAMBDA_TASK_ROOT}/mlcore/"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "cp -r mlcore build/lambda-zip/mlcore" in makefile


def test_the_dockerfile_builds_the_handler_from_the_lambda_base_image():
    dockerfile = (REPO_ROOT / "lambda" / "Dockerfile").read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.\d+", dockerfile, re.M)
    assert "torch" not in dockerfile.replace("no torch", "") and 'CMD ["app.handler"]' in dockerfile
    lines = (REPO_ROOT / "lambda" / "requirements.txt").read_text().splitlines()
    packages = {re.split(r"[<>=\[ ]", line.strip())[0].lower() for line in lines if line.strip() and not line.startswith("#")}
    assert packages == {"fastapi", "mangum", "pydantic", "tokenizers", "numpy", "onnxruntime", "orjson"}


def test_the_files_the_image_copies_are_enough_to_serve(model_file, tmp_path):
    """Lay out the task root as the Dockerfile does and serve a request from it, without torch."""
    import shutil

    task_root = tmp_path / "task"
    task_root.mkdir()
    shutil.copytree(REPO_ROOT / "mlcore", task_root / "mlcore", ignore=shutil.ignore_patterns("__pycache__"))
    for source in (REPO_ROOT / "lambda").glob("*.py"):
        shutil.copy(source, task_root)
    code = ("import sys, json, app; sys.path.append(sys.argv[1]); from events import http_api_v2, FakeContext; "
            "r = app.handler(http_api_v2('POST', '/classify', {'text': 'hi'}), FakeContext()); "
            "print(r['statusCode'], 'torch' in sys.modules or 'transformers' in sys.modules, "
            "sys.modules['mlcore'].__file__.startswith(sys.argv[2]))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO_ROOT / "tests" / "serving"), str(task_root)], cwd=task_root,
                         env={"MODEL_URI": str(model_file), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert out.stdout.split()[-3:] == ["200", "False", "True"], out.stderr[-2000:]
