# The front door: `make help` lists every task.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --frozen
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install run serve migrate seed lint fmt test check cov contract diff bench clean

help: ## list the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.13,<0.14"

install: $(UV) ## create .venv with the locked dependencies (dev group included)
	$(UV) sync --frozen

migrate: install ## alembic upgrade head on DATABASE_URL (SQLite by default)
	$(RUN) alembic upgrade head

seed: migrate ## the Flask service's demo admin and users (development only)
	$(RUN) quart --app service.asgi seed-db

run: seed ## install, migrate, seed and serve on the embedded SQLite default
	@echo "Serving on http://$(HOST):$(PORT)/api/v1 (database: $${DATABASE_URL:-instance/service.db}); Ctrl-C stops"
	$(RUN) hypercorn -c hypercorn.toml -b $(HOST):$(PORT) service.asgi:app

serve: install ## serve with hypercorn.toml, no migration or seeding
	$(RUN) hypercorn -c hypercorn.toml -b $(HOST):$(PORT) service.asgi:app

fmt: install ## format and fix lint
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

lint: install ## ruff format --check, ruff check, mypy --strict
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy

test: install ## the test suite (PostgreSQL at 127.0.0.1:5432, see README)
	$(RUN) pytest

check: lint test ## install, lint and run the whole test suite: what CI runs

cov: install ## the test suite under coverage
	$(RUN) coverage run -m pytest
	$(RUN) coverage report

contract: install ## a longer schemathesis run against the OpenAPI document (200 examples per operation)
	SCHEMATHESIS_MAX_EXAMPLES=200 $(RUN) pytest tests/test_schemathesis.py

diff: install ## thousands of request sequences to the Flask original and this service, compared (docs/MIGRATING.md)
	DIFFERENTIAL_EXAMPLES=$${DIFFERENTIAL_EXAMPLES:-3000} $(RUN) pytest tests/differential/test_differential.py

bench: install ## benchmark against a bare ASGI app on the same Hypercorn (PostgreSQL, wrk): bench/README.md
	$(RUN) python bench/run.py $(BENCH_ARGS)

clean: ## remove the virtualenvs and caches
	rm -rf .venv $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .coverage
