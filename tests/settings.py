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

from webapp.settings import *  # noqa: E402,F401,F403

# A worker process started by a test must see the test database: on SQLite it is a file, not memory.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["VAR_DIR"], "test-db.sqlite3")}  # noqa: F405
