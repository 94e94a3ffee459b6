# One command to set up and run the main job, one to set up and run every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SITE   := .site
CHROMIUM := /usr/bin/chromium
REDIS_SERVER := /usr/bin/redis-server

.PHONY: demo test check lint typecheck docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The devtools tests drive Debian's chromium through Playwright (Playwright's browser downloads are not used).
$(CHROMIUM):
	apt-get update && apt-get install -y chromium

# tests/sync start Debian's redis-server (7.0 on bookworm; replication needs Redis >= 6.2) on 127.0.0.1 themselves.
$(REDIS_SERVER):
	apt-get update && apt-get install -y redis-server

demo: $(STAMP)
	$(BIN)/mst-llm demo

lint: $(STAMP)
	$(BIN)/ruff check mst_llm tests benchmarks examples
	$(BIN)/ruff format --check mst_llm tests benchmarks examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# the docs site (mkdocs-material + mkdocstrings); --strict turns every warning into an error
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(SITE)

test: lint typecheck docs $(CHROMIUM) $(REDIS_SERVER)
	$(BIN)/python -m pytest

bench: $(STAMP) $(REDIS_SERVER)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(SITE) .pytest_cache .mypy_cache .ruff_cache .hypothesis
