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

    # CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values.
    Loader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_yaml_str(node) if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node))
    return yaml.load((REPO_ROOT / "template.yaml").read_text(), Loader=Loader)


def test_the_function_gets_the_settings_the_app_reads():
    from serving_config import ServingSettings

    function = _template()["Resources"]["ClassifyFunction"]["Properties"]
    assert function["PackageType"] == "Image"
    variables = set(function["Environment"]["Variables"])
    assert variables <= {name.upper() for name in ServingSettings.model_fields}
    assert {"MODEL_URI", "MODEL_REFRESH_SECONDS", "API_KEYS", "CONFIDENCE_THRESHOLD", "REVIEW_SINK", "REVIEW_QUEUE_URL"} <= variables
    assert function["Environment"]["Variables"]["REVIEW_SINK"] == "sqs"
    policies = [next(iter(policy)) for policy in function["Policies"]]
    assert policies == ["S3ReadPolicy", "SQSSendMessagePolicy"]


def test_the_dockerfile_builds_the_handler_from_the_lambda_base_image():
    dockerfile = (REPO_ROOT / "lambda" / "Dockerfile").read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.\d+", dockerfile, re.M)
    assert "download.pytorch.org/whl/cpu" in dockerfile and 'CMD ["app.handler"]' in dockerfile
    lines = (REPO_ROOT / "lambda" / "requirements.txt").read_text().splitlines()
    packages = {re.split(r"[<>=\[ ]", line.strip())[0].lower() for line in lines if line.strip() and not line.startswith("#")}
    assert packages == {"fastapi", "mangum", "pydantic-settings", "tokenizers", "numpy"}
