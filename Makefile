# Two commands do all set-up: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HTMX_VERSION := 2.0.4
HTMX_JS := webapp/static/vendor/htmx.min.js
SWAGGER_UI_VERSION := 5.35.0
SWAGGER_UI := webapp/static/vendor/swagger-ui/swagger-ui-bundle.js
TRANSLATIONS_PO := webapp/translations/tr/LC_MESSAGES/messages.po
TRANSLATIONS_MO := $(TRANSLATIONS_PO:.po=.mo)
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test install install-test services lint typecheck pytest litellm-proxy browser pdf-libs db-tools messages clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(HTMX_JS):
	mkdir -p build/npm webapp/static/vendor
	npm install --silent --no-audit --no-fund --prefix build/npm htmx.org@$(HTMX_VERSION)
	cp build/npm/node_modules/htmx.org/dist/htmx.min.js $@

# Swagger UI for /api/docs, served from our own static files (no CDN, the page's CSP allows only 'self').
$(SWAGGER_UI):
	mkdir -p build/npm webapp/static/vendor/swagger-ui
	npm install --silent --no-audit --no-fund --prefix build/npm swagger-ui-dist@$(SWAGGER_UI_VERSION)
	cp build/npm/node_modules/swagger-ui-dist/swagger-ui-bundle.js build/npm/node_modules/swagger-ui-dist/swagger-ui.css \
		webapp/static/vendor/swagger-ui/

# Compiled catalogs are build output; the .po files are the source (see `make messages`).
$(TRANSLATIONS_MO): $(TRANSLATIONS_PO) | $(BIN)/activate
	$(BIN)/pybabel -q compile --use-fuzzy -d webapp/translations

# Re-extract every translatable string and merge it into the catalogs; then translate the new entries.
messages: install-test
	mkdir -p build
	$(BIN)/pybabel -q extract -F babel.cfg -k _l -k lazy_gettext -o build/messages.pot .
	$(BIN)/pybabel -q update -N -i build/messages.pot -d webapp/translations

install: $(VENV)/.installed $(HTMX_JS) $(SWAGGER_UI) $(TRANSLATIONS_MO)

install-test: $(VENV)/.installed-test $(HTMX_JS) $(SWAGGER_UI) $(TRANSLATIONS_MO)

.env:
	@echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')" > .env
	@echo "Wrote .env with a generated SECRET_KEY."

run: install .env pdf-libs
	@bash scripts/run.sh

services:
	@bash scripts/ensure_services.sh

litellm-proxy:
	@bash scripts/install_litellm_proxy.sh

browser:
	@bash scripts/ensure_browser.sh

pdf-libs:
	@bash scripts/ensure_pdf_libs.sh

# PgBouncer and replication on loopback for tests/scale (each test run starts its own bouncer and standby).
db-tools: services
	@bash scripts/ensure_pgbouncer.sh
	@bash scripts/ensure_replica.sh prepare

lint: install-test
	$(BIN)/ruff check webapp tests scripts benchmarks wsgi.py gunicorn_worker.py

typecheck: install-test
	$(BIN)/mypy webapp

pytest: install-test services litellm-proxy browser pdf-libs db-tools
	TEST_DATABASE_URL=$(PG_TEST_URL) TEST_REDIS_URL=$(REDIS_TEST_URL) $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
