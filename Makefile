# Set-up and entry points. `make demo` and `make test` each do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this machine's disk; install it before anything can pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.tritonforge-installed
PYTEST_ARGS ?=

.PHONY: venv system-deps demo test test-unit lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check '$(TORCH_SPEC)'
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,examples]'
	touch $@

venv: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: venv system-deps
	$(PY) examples/demo.py

test: venv system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) model_repository/*/ examples/*/artifacts perf_results
