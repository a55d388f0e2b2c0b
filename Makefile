# The two set-up commands (see README):  make run   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install translations catalogs bench

$(BIN)/qol: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(BIN)/qol

install: $(BIN)/qol translations

translations: install-venv-only
	$(BIN)/pybabel -q compile -d translations

install-venv-only: $(BIN)/qol

## Run the app on SQLite in instance/ with demo data (http://127.0.0.1:5000), with its scheduler.
run: install
	$(BIN)/qol db upgrade
	$(BIN)/qol demo
	$(BIN)/qol scheduler & sched=$$!; trap 'kill $$sched 2>/dev/null' EXIT INT TERM; \
	QOL_SESSION_COOKIE_SECURE=0 $(BIN)/qol run --host 127.0.0.1 --port 5000

## Run the whole test suite (SQLite, plus PostgreSQL when a server answers).
test: install
	$(BIN)/python -m pytest

## Re-extract UI strings and update the catalogs (then translate and commit the .po files).
catalogs: install-venv-only
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --ignore-obsolete

bench: install
	$(BIN)/python bench/run_all.py
