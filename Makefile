# Two commands for a fresh clone: `make demo` (the whole job on embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
export DEBUG ?= 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo serve lambda-zip test test-sqlite test-postgres install clean

install: $(STAMP)

# torch first, pinned to the CPU build that lies on local disk; the project's range admits it,
# so the editable install adds nothing heavier.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Everything on embedded defaults: SQLite, the ORM broker, the offline encoder, the demo data.
demo: $(STAMP)
	$(PY) scripts/demo.py

# The serving app under uvicorn, against the currently promoted model (SERVING_MODEL_URI's default).
# The development install holds the serving package (pyproject.toml maps it from lambda/).
serve: $(STAMP)
	MODEL_URI=$${MODEL_URI:-var/serving/model.onnx} $(VENV)/bin/uvicorn intentflow_serving.app:app --host 127.0.0.1 --port 8001

# The serving code as a zip package (template.yaml's PackageFormat=Zip, CodeUri build/lambda-zip):
# lambda/build.py's files, the same list lambda/Dockerfile puts in the image, and the lock as the
# requirements.txt that sam build installs. No bytecode: sam build leaves out *.pyc and __pycache__,
# and SnapStart's snapshot holds the imported modules anyway.
lambda-zip:
	rm -rf build/lambda-zip
	$(PYTHON) lambda/build.py --no-compile build/lambda-zip
	cp lambda/requirements.lock build/lambda-zip/requirements.txt

test: test-sqlite test-postgres

# One pytest-xdist worker per core: each has its own test database (pytest-django suffixes its
# name) and its own files (tests/settings.py), so tests never share a row or an artifact.
XDIST ?= -n auto

test-sqlite: $(STAMP)
	$(PY) -m pytest $(XDIST)

# The Django suite again against the PostgreSQL server on 127.0.0.1.
test-postgres: $(STAMP)
	DATABASE_URL=$(POSTGRES_URL) $(PY) -m pytest $(XDIST) tests/webapp tests/e2e

clean:
	rm -rf var .pytest_cache
