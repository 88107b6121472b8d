# Set-up and entry points. `make demo` and `make test` each do all set-up on a fresh machine.
# Debian's python3.11: the Python-backend stub of the local tritonserver embeds Debian's libpython3.11, so the
# venv it imports from must have the same standard library (a pyenv 3.11.7 stdlib breaks `import ssl` there).
PYTHON ?= /usr/bin/python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this machine's disk; install it before anything can pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.tritonforge-installed
SERVING_STAMP := $(VENV)/.tritonforge-serving-env
# Model Analyzer (PyPI triton-model-analyzer) in an environment of its own: it pins its own numpy, protobuf and
# tritonclient. `tritonforge model-analyzer-config` writes for this release; make test runs it against the local server.
MODEL_ANALYZER_VERSION ?= 1.58.0
MA_VENV := $(VENV)-model-analyzer
MA_STAMP := $(MA_VENV)/.installed-$(MODEL_ANALYZER_VERSION)
PYTEST_ARGS ?=
# make test runs the suite in this many pytest-xdist workers, each test file whole in one worker (its servers and
# module fixtures stay in one process; session fixtures are made once per worker). Most tests wait on real
# servers, so two workers on two cores halve the wall time; 0 runs it in one process.
TEST_WORKERS ?= 2
CHECK_PATHS := tritonforge tests benchmarks examples
# vulture reports unused functions, methods and fields from 60 on; what it cannot see used is in the whitelist
VULTURE_CONFIDENCE ?= 60

.PHONY: venv serving-env model-analyzer system-deps demo check test test-unit lint docs bench reliability clean

# The project's environment: tritonforge, torch, current numpy/protobuf/onnx, the client, the linters.
$(STAMP): pyproject.toml | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check '$(TORCH_SPEC)'
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,examples]'
	touch $@

# The local server's environment (numpy<2, the container's packages, the server binary, perf_analyzer), made
# once in ~/.cache/tritonforge and keyed by what defines it; `tritonforge serve` would make it on first use.
$(SERVING_STAMP): tritonforge/serving/requirements.txt tritonforge/server/environment.py $(STAMP)
	$(VENV)/bin/tritonforge serving-env
	touch $@

venv: $(STAMP) $(SERVING_STAMP)
serving-env: $(SERVING_STAMP)

$(MA_STAMP): | system-deps
	test -x $(MA_VENV)/bin/python || $(PYTHON) -m venv $(MA_VENV)
	$(MA_VENV)/bin/python -m pip install -q --disable-pip-version-check 'triton-model-analyzer==$(MODEL_ANALYZER_VERSION)'
	touch $@

model-analyzer: $(MA_STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: venv
	$(PY) examples/demo.py

# Static checks, all run, failing if any failed: lint, formatting, types (config in pyproject.toml), dead code.
check: $(STAMP)
	@status=0; \
	echo "ruff check"; $(PY) -m ruff check $(CHECK_PATHS) || status=1; \
	echo "ruff format --check"; $(PY) -m ruff format --check $(CHECK_PATHS) || status=1; \
	echo "mypy"; $(PY) -m mypy || status=1; \
	echo "vulture"; $(PY) -m vulture $(CHECK_PATHS) vulture_whitelist.py --min-confidence $(VULTURE_CONFIDENCE) || status=1; \
	exit $$status

lint: check

# The Model Analyzer test is told where `make model-analyzer` put it, so here it runs (elsewhere it skips without one).
test: check venv model-analyzer
	TRITONFORGE_MODEL_ANALYZER=$(abspath $(MA_VENV))/bin/model-analyzer $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The CLI reference, generated from the CLI itself (tests/unit/cli/test_reference.py fails when it is stale).
docs: $(STAMP)
	$(PY) -m tritonforge.cli.reference > docs/cli.md

# The long scenarios behind the tables in docs/ and the README (not part of make test).
bench: venv
	$(PY) -m benchmarks.bench_serving
	$(PY) -m benchmarks.bench_int8
	$(PY) -m benchmarks.bench_shadow

reliability: venv
	$(PY) -m benchmarks.reliability

clean:
	rm -rf $(VENV) $(MA_VENV) model_repository/*/ model_repository.model_analyzer examples/*/artifacts perf_results
