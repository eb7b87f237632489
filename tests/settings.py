"""The project's settings as a developer runs them: DEBUG on, so the development key is accepted.

Production behaviour (DEBUG off, check --deploy) is tested in a subprocess by
tests/webapp/test_settings.py.
"""

import os

os.environ.setdefault("DEBUG", "1")

from webapp.settings import *  # noqa: E402,F401,F403
