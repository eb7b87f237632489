import os
import subprocess
import sys

from tests.factories import REPO_ROOT


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        env={**clean, "DJANGO_SETTINGS_MODULE": "webapp.settings", **env},
    )


def test_check_deploy_is_clean_with_debug_off():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0",
                        SECRET_KEY="k8Qy3-x7Vb2nR9pL4mZ1cW6tY0sH5jD8fG3kA2qE7uI9oP1-Zr5TqWm8Lx", ALLOWED_HOSTS="intents.example.com")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_debug_off_refuses_a_missing_or_default_secret_key():
    for key in ("", "django-insecure-intentflow-development-key-do-not-deploy"):
        result = run_manage("check", DEBUG="0", SECRET_KEY=key)
        assert result.returncode != 0 and "SECRET_KEY is missing or is the development default" in result.stderr


def test_database_url_selects_postgresql():
    code = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['NAME'])"
    result = run_manage("shell", "-c", code, DEBUG="1", DATABASE_URL="postgres://postgres@127.0.0.1:5432/test")
    assert result.stdout.splitlines()[-1].split() == ["django.db.backends.postgresql", "test"]


def test_the_web_process_does_not_load_torch():
    """The admin and API only read metrics; torch loads in the worker, when a run trains or is promoted."""
    code = ("from django.urls import get_resolver; get_resolver().url_patterns; "
            "import sys, webapp.training.admin, webapp.review.admin, webapp.labeling.admin; print('torch' in sys.modules)")
    result = run_manage("shell", "-c", code, DEBUG="1")
    assert result.stdout.splitlines()[-1] == "False", result.stderr[-2000:]
