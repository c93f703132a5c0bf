# imggit — two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit bench lint docs docs-check clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Build the example images into the embedded store (no engine needed) and show them.
demo: $(STAMP)
	$(BIN)/python examples/demo/build.py
	@echo; echo '$$ imggit log embedded:demo/app:1'
	@$(BIN)/imggit log embedded:demo/app:1
	@echo '$$ imggit log --graph --oneline embedded:demo/app:1 embedded:demo/tool:1'
	@$(BIN)/imggit log --graph --oneline embedded:demo/app:1 embedded:demo/tool:1

# The whole suite; it starts its own Docker engine and registry when they are installed
# (apt-get install docker.io docker-registry skopeo umoci busybox-static). CI=true makes them required.
test: $(STAMP)
	$(BIN)/python -m pytest -q tests --ignore=tests/bench

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# Benchmarks against the real engine and other tools; prints every ratio (docs/performance.md).
bench: $(STAMP)
	$(BIN)/python tests/bench/run.py

# Run every example of docs/*.md and write its real output into the page (docs/tools/examples.py).
docs: $(STAMP)
	$(BIN)/python docs/tools/examples.py

# Fail with a diff when a page's examples no longer show what imggit prints.
docs-check: $(STAMP)
	$(BIN)/python docs/tools/examples.py --check

lint: $(STAMP)
	$(BIN)/pip install -q ruff mypy
	$(BIN)/ruff check imggit
	$(BIN)/mypy imggit

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
