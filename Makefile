# The two set-up commands (see README):  make run   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
CATALOGS := qol_app/translations
LINTED := qol_app tests bench scripts deploy setup.py
# pytest-xdist workers: one per core. Modules sharing one costly fixture (a browser, a two-node
# stack) carry an xdist_group mark so loadgroup keeps them on one worker.
TEST_WORKERS ?= auto

.PHONY: run test lint typecheck catalogs compile-catalogs bench dist smoke mutate

# The app alone (make run), and the app with the test tools (make test). Each stamp is redone when
# pyproject.toml changes.
$(VENV)/.app-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.app-installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

compile-catalogs: $(VENV)/.app-installed
	$(BIN)/pybabel -q compile -d $(CATALOGS)

## Run the app on SQLite in instance/ with demo data (http://$(HOST):$(PORT)), with its scheduler.
run: compile-catalogs
	$(BIN)/qol db upgrade
	QOL_PUBLIC_BASE_URL=http://$(HOST):$(PORT) $(BIN)/qol demo
	QOL_PUBLIC_BASE_URL=http://$(HOST):$(PORT) $(BIN)/qol scheduler & sched=$$!; trap 'kill $$sched 2>/dev/null' EXIT INT TERM; \
	QOL_SESSION_COOKIE_SECURE=0 $(BIN)/qol run --host $(HOST) --port $(PORT)

## Lint and format checks, then the whole test suite (SQLite, plus PostgreSQL when a server answers),
## with line coverage of the domain packages and services ([tool.coverage] in pyproject.toml).
test: lint compile-catalogs
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --cov --cov-report=term

lint: $(VENV)/.test-installed
	$(BIN)/ruff check --no-cache $(LINTED)
	$(BIN)/ruff format --no-cache --check $(LINTED)
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/mypy

## mypy over qol_app/ alone ([tool.mypy] in pyproject.toml; also part of lint).
typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

## Re-extract UI strings and update the catalogs (then translate and commit the .po files).
catalogs: $(VENV)/.app-installed
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output -o $(CATALOGS)/messages.pot .
	$(BIN)/pybabel update -i $(CATALOGS)/messages.pot -d $(CATALOGS) --no-fuzzy-matching --ignore-obsolete

## Mutation testing (mutmut) of scheduling/, scoring/, alerts/rules.py, services/timepoints.py and
## services/compliance.py ([tool.mutmut] in pyproject.toml); not part of make test. MUTANTS="qol_app.scoring*"
## runs a subset; then `$(BIN)/mutmut results` lists the survivors and `$(BIN)/mutmut show NAME` one diff.
MUTANTS ?=
mutate: compile-catalogs $(VENV)/.test-installed
	$(BIN)/python -m pip install --quiet 'mutmut>=3.8,<4'
	$(BIN)/mutmut run $(MUTANTS)
	$(BIN)/mutmut results

bench: $(VENV)/.test-installed
	$(BIN)/python bench/run_all.py

## The wheel a site installs (dist/qol_app-*.whl, compiled catalogs inside): pip install dist/*.whl
dist: $(VENV)/.test-installed
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation -w dist .

## nginx in front of two gunicorn nodes and the scheduler on PostgreSQL, on loopback; walks a visit.
smoke: compile-catalogs $(VENV)/.app-installed
	$(BIN)/python deploy/smoke.py
