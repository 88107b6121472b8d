# Set-up and entry points. `make demo` and `make test` each do all set-up on a fresh machine.
# Debian's python3.11: the Python-backend stub of the local tritonserver embeds Debian's libpython3.11, so the
# venv it imports from must have the same standard library (a pyenv 3.11.7 stdlib breaks `import ssl` there).
PYTHON ?= /usr/bin/python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this machine's disk; install it before anything can pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.tritonforge-installed
PYTEST_ARGS ?=

.PHONY: venv system-deps demo test test-unit lint clean

$(STAMP): pyproject.toml | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check '$(TORCH_SPEC)'
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,examples]'
	touch $@

venv: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: venv
	$(PY) examples/demo.py

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check tritonforge benchmarks tests examples

clean:
	rm -rf $(VENV) model_repository/*/ examples/*/artifacts perf_results
