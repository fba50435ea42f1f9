# Every target creates the virtual environment it needs, so a fresh clone needs only `make run`
# or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed-run

.PHONY: run test lint docs bench clean

# `make run` needs Nexus and its built-in plugins' extras; `make test` adds the dev tools.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/nexus run --config examples/nexus.yaml

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy src

# The documentation site, in strict mode: a broken link or reference fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

test: lint docs
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/events.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/http_overhead.py
	$(BIN)/python bench/http_overhead.py --auth
	$(BIN)/python bench/routing_scale.py
	$(BIN)/python bench/reload_under_load.py
	$(BIN)/python bench/redis_bus.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
