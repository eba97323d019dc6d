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

## make run: embedded SQLite in instance/, demo data, jobs inline, http://127.0.0.1:5000
run: install
	@mkdir -p instance
	WOFFICE_ENV=development $(FLASK) db upgrade
	WOFFICE_ENV=development $(FLASK) woffice seed-demo
	@echo "Woffice Back Office: http://127.0.0.1:5000  (admin@xigmapro.example / demo-pass-2026)"
	WOFFICE_ENV=development $(FLASK) run --host 127.0.0.1 --port 5000

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

bench: install services
	$(BIN)/python -m bench.run_all

clean-demo:
	rm -rf instance/woffice.db instance/mail
