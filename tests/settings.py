"""The project's settings as a developer runs them: DEBUG on, so the development key is accepted.

Production behaviour (DEBUG off, check --deploy) is tested in a subprocess by
tests/webapp/test_settings.py.
"""

import os
import tempfile

os.environ.setdefault("DEBUG", "1")
# Files the tests write (artifacts, the serving model) go to a folder of this test session; worker
# processes started by the tests inherit it.
os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="intentflow-tests-"))
# Under pytest-xdist each worker has a database of its own (pytest-django suffixes its name) and so
# its own run ids: it needs its own folder too, or two workers' "run 1" would share artifact files.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and os.environ.get("INTENTFLOW_TEST_WORKER") != _worker:
    os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix=f"intentflow-tests-{_worker}-")
    os.environ["INTENTFLOW_TEST_WORKER"] = _worker

from webapp.settings import *  # noqa: E402,F401,F403

# A worker process started by a test must see the test database: on SQLite it is a file, not memory.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["VAR_DIR"], "test-db.sqlite3")}  # noqa: F405
