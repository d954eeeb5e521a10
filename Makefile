# Task runner. Two commands matter: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Demo size: small enough to run in a minute or two on a laptop.
DEMO_CUSTOMERS ?= 20000
DEMO_MONTHS ?= 12
DEMO_SEED ?= 7
PYTEST_ARGS ?=
# Test workers (pytest-xdist): two, the cores of the CI machine; 0 runs the suite in one
# process. --dist loadscope keeps each module's tests on one worker, so a module's expensive
# fixtures (trained models, generated banks) are built once (tests/conftest.py).
PYTEST_WORKERS ?= 2

.PHONY: install demo test browser lint format bench loadtest mlflow-ui screenshots clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import sys; assert sys.version_info >= (3, 11), sys.version" || { echo "need Python 3.11+ (make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

demo: $(STAMP) ## generate data, train, register, promote, materialize, then serve on :8000
	$(BIN)/nbo demo --customers $(DEMO_CUSTOMERS) --months $(DEMO_MONTHS) --seed $(DEMO_SEED)

PACKAGES := core features training registry service cli loadtests

test: lint browser ## lint and type-check, then every test (real Redis and a real MLflow registry)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# The console's browser tests drive Debian's Chromium through Playwright (never a browser
# download); without a way to install it they skip, naming what is missing.
browser: ## install Chromium for the console's browser tests when missing (apt-get)
	@[ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 \
	  || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	  || echo "make: could not install chromium; the console's browser tests will skip"

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## recommender training time and per-request scoring latency
	$(BIN)/python -m loadtests.bench_scoring

loadtest: $(STAMP) ## fixed-rate load against a running service and the bare baseline (see docs/operations.md)
	$(BIN)/nbo loadtest --url http://127.0.0.1:8000 --customers var/demo_customers.txt --baseline --json

MLFLOW_UI_PORT ?= 5000

screenshots: $(STAMP) browser ## the console's screenshots in docs/img (docs/console.md)
	$(BIN)/python docs/img/take_console_screenshots.py

mlflow-ui: $(STAMP) ## the MLflow UI on the project's runs and registry (docs/data-science.md)
	$(BIN)/nbo mlflow ui --port $(MLFLOW_UI_PORT)

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
