# The two commands: `make run` starts Junction, `make test` runs every check.
# Both create .venv and install what they need on first use (again when pyproject changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start Junction on its embedded default: SQLite in ./junction.db and a demo workspace.
run: $(STAMP)
	$(BIN)/junction serve --demo

## Lint, type-check and run the whole test suite (SQLite, PostgreSQL, a real browser).
test: lint typecheck
	scripts/ensure-browser
	$(BIN)/pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/policy.py
	$(BIN)/python bench/journeys.py
	$(BIN)/python bench/segments.py
	$(BIN)/python bench/campaign.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
