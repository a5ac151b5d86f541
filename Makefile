# The front door: `make help` lists every task.
# The service runs and is tested on the Python .python-version names (3.13): uv picks it
# for .venv (and recreates a .venv made on another one); pyenv's shims read the same file.
# PYTHON only makes .tools, uv's own venv, and may be any Python 3.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --frozen
# The service's own commands on whatever .venv holds: runtime only after
# `make run`, the dev group too after `make install`; never re-synced.
APP := $(UV) run --frozen --no-sync
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install install-runtime run dev serve migrate seed lint fmt test check cov contract clients diff bench clean

help: ## list the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'
	@echo "Where run, dev and serve listen: PORT=$(PORT) HOST=$(HOST), e.g. make run PORT=8001"
	@echo "(HOST=0.0.0.0: every address). Settings: .env or the environment, docs/configuration.md"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.13,<0.14"

# The generated-client check's node toolchain (tests/system/test_clients.py), pinned by
# clients/package-lock.json; without npm that check is skipped and says so.
NODE_TOOLS := clients/node_modules/.package-lock.json

$(NODE_TOOLS): clients/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix clients --no-audit --no-fund; \
	else echo "npm not found: tests/system/test_clients.py skips the TypeScript check (Debian: apt-get install nodejs npm)"; fi

install: $(UV) $(NODE_TOOLS) ## create .venv with the locked dependencies (dev group included), and clients/node_modules
	$(UV) sync --frozen

# --inexact: a developer's .venv keeps its dev group; a fresh one gets none.
install-runtime: $(UV) ## create .venv with the service's locked runtime packages only
	$(UV) sync --frozen --no-dev --inexact

migrate: install-runtime ## alembic upgrade head on DATABASE_URL (SQLite by default)
	$(APP) alembic upgrade head

seed: migrate ## the Flask service's demo admin and users (development only)
	$(APP) quart --app service.asgi seed-db

define SERVING
Serving (database: $(or $(DATABASE_URL),instance/service.db)); Ctrl-C stops.
  Docs:      http://$(HOST):$(PORT)/docs   (the OpenAPI document: http://$(HOST):$(PORT)/openapi.json)
  API:       http://$(HOST):$(PORT)/api/v1/auth/login   (POST; every path is under /api/v1), e.g.
             curl -s -X POST http://$(HOST):$(PORT)/api/v1/auth/login -H 'Content-Type: application/json' -d '{"email": "admin@example.com", "password": "admin123"}'
  Accounts:  admin@example.com / admin123 (admin); user1@example.com ... user5@example.com / password123
  Mail:      without SMTP_URL, written to this log (service.mail); a reset link's token is
             POSTed with a new password to /api/v1/auth/password/reset (docs/client.md)
endef
export SERVING

run: seed ## runtime packages only: migrate, seed and serve on the embedded SQLite default (PORT=...)
	@echo "$$SERVING"
	$(APP) hypercorn -c hypercorn.toml -b $(HOST):$(PORT) service.asgi:app

dev: install seed ## like run, with the dev group, reload on code changes and text logs
	@echo "$$SERVING"
	LOG_FORMAT=text $(APP) hypercorn -c hypercorn.toml -b $(HOST):$(PORT) --reload service.asgi:app

serve: install-runtime ## serve with hypercorn.toml, no migration or seeding
	$(APP) hypercorn -c hypercorn.toml -b $(HOST):$(PORT) service.asgi:app

fmt: install ## format and fix lint
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

lint: install ## ruff format --check, ruff check, mypy --strict, lint-imports (the layers)
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy
	$(RUN) lint-imports

test: install ## the test suite (PostgreSQL and Redis: docs/testing.md)
	$(RUN) pytest

check: lint test ## install, lint and run the whole test suite: what CI runs

cov: install ## the test suite under coverage
	$(RUN) coverage run -m pytest
	$(RUN) coverage report

contract: install ## a longer schemathesis run against the OpenAPI document (200 examples per operation)
	SCHEMATHESIS_MAX_EXAMPLES=200 $(RUN) pytest tests/parity/test_schemathesis.py

clients: install ## generate the TypeScript and Python clients from /openapi.json; tsc and mypy --strict on code using them
	$(RUN) pytest tests/system/test_clients.py

diff: install ## thousands of request sequences to the Flask original and this service, compared (docs/MIGRATING.md)
	HYPOTHESIS_PROFILE=explore DIFFERENTIAL_EXAMPLES=$${DIFFERENTIAL_EXAMPLES:-3000} $(RUN) pytest tests/parity/test_differential.py

bench: install ## benchmark against a bare ASGI app on the same Hypercorn (PostgreSQL, wrk): bench/README.md
	$(RUN) python bench/run.py $(BENCH_ARGS)

clean: ## remove the virtualenvs and caches
	rm -rf .venv .venv-* $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .coverage clients/node_modules
