# Woffice Back Office. The two commands: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app run
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)

.PHONY: run test install lint format services chromium worker run-stack clean-demo bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# The demo's fake WhatsApp Cloud API (tests/fakes/whatsapp_cloud.py): both demo numbers as
# phone id:app secret:access token:WABA id, the values app/services/demo_contacts.py seeds
# (tests/test_make_run_boot.py checks that they agree).
RUN_PORT ?= 5000
DEMO_WA_PORT ?= 8899
DEMO_WA_NUMBERS := \
	100000000000001:acme-demo-app-secret:acme-demo-access-token-2026:200000000000001 \
	100000000000002:bharat-demo-app-secret:bharat-demo-access-token-2026:200000000000002

## make run: embedded SQLite in instance/, demo data, jobs inline, http://127.0.0.1:5000,
## the fake Cloud API on 127.0.0.1:8899 (stopped with the app)
run: install
	@mkdir -p instance
	WOFFICE_ENV=development $(FLASK) db upgrade
	WOFFICE_ENV=development $(FLASK) woffice seed-demo
	@$(BIN)/python -m tests.fakes.whatsapp_cloud --port $(DEMO_WA_PORT) \
		--webhook-url http://127.0.0.1:$(RUN_PORT)/webhooks/whatsapp \
		$(foreach number,$(DEMO_WA_NUMBERS),--phone $(number)) & fake=$$!; \
	trap 'kill $$fake 2>/dev/null; wait $$fake 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	echo "Woffice Back Office: http://127.0.0.1:$(RUN_PORT)  (admin@xigmapro.example / demo-pass-2026)"; \
	WOFFICE_ENV=development WHATSAPP_API_BASE=http://127.0.0.1:$(DEMO_WA_PORT) \
		$(FLASK) run --host 127.0.0.1 --port $(RUN_PORT)

## make test: PostgreSQL + Redis (started if down), migrations, the whole suite, ruff
test: install services chromium lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

services:
	@bash scripts/ensure-services.sh

chromium:
	@bash scripts/ensure-chromium.sh

## A worker for every queue against REDIS_URL (production: one per queue group).
worker: install
	$(FLASK) woffice worker

## make run-stack: the Procfile (gunicorn, a worker per queue group, cron) under honcho,
## against PostgreSQL and Redis: http://127.0.0.1:$(STACK_PORT) (Ctrl-C stops them all)
STACK_DATABASE_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/woffice_stack
STACK_REDIS_URL ?= redis://127.0.0.1:6379/2
STACK_PORT ?= 8000
STACK_ENV := WOFFICE_ENV=development DATABASE_URL=$(STACK_DATABASE_URL) \
	REDIS_URL=$(STACK_REDIS_URL) LOG_FORMAT=$${LOG_FORMAT:-json}
run-stack: install services
	@DATABASE_URL=$(STACK_DATABASE_URL) $(BIN)/python -c 'import os, psycopg2; \
	from sqlalchemy.engine import make_url; u = make_url(os.environ["DATABASE_URL"]); \
	c = psycopg2.connect(host=u.host, port=u.port or 5432, user=u.username, \
	password=u.password, dbname="postgres"); c.autocommit = True; cur = c.cursor(); \
	cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (u.database,)); \
	cur.fetchone() or (cur.execute(f"CREATE DATABASE \"{u.database}\""), \
	print("created database", u.database))'
	$(STACK_ENV) $(FLASK) db upgrade
	$(STACK_ENV) $(FLASK) woffice sync-roles
	$(STACK_ENV) $(FLASK) woffice seed-demo
	@echo "Woffice stack: http://127.0.0.1:$(STACK_PORT)  (admin@xigmapro.example / demo-pass-2026)"
	@# No gunicorn access line: the app logs one per request, with the route, not the URL.
	PATH="$(abspath $(BIN)):$$PATH" $(STACK_ENV) GUNICORN_BIND=127.0.0.1:$(STACK_PORT) \
		GUNICORN_WORKERS=$${GUNICORN_WORKERS:-2} GUNICORN_ACCESS_LOG= $(BIN)/honcho start

bench: install services
	$(BIN)/python -m bench.run_all

clean-demo:
	rm -rf instance/woffice.db instance/mail
