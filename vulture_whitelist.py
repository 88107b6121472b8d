"""Names vulture cannot see used: called by a framework, read through asdict()/model_dump(), or set on a foreign
object. `make check` runs vulture over tritonforge, tests, benchmarks, examples and scripts with this file at
--min-confidence 60 (60 is where unused functions, methods and fields are reported). Never executed; each line
is a use. Add a name here only with the reason it is used; delete the dead code otherwise."""

# ruff: noqa
_ = object()

# typer commands: registered by @app.command() decorators and called by typer
perf, perf_search, perf_inputs  # tritonforge/cli/perf_commands.py
serve, reload, serving_env  # tritonforge/cli/serve_commands.py

# pydantic validators: called by pydantic through their decorators
_._id  # tritonforge/spec/base.py
_._range, _._name, _._dtype, _._fields_for_kind, _._one_source, _._model_name, _._consistent, _._weights_for_dynamic  # tritonforge/spec/model.py
_._window_holds_min_samples, _._shadow_needs_the_router  # tritonforge/spec/model.py (serving.shadow)

# spec fields: read by the gate, the report and the served model from the spec's model_dump() (settings JSON)
min_top1_agreement, max_mean_rel  # gate thresholds
placement, redis_url, key_prefix, compression_level, memory_max_bytes, rung_timeout_ms  # serving settings
description

# dataclass fields written to JSON by asdict() (build report, perf results, manifest, hardware)
mean_cosine  # serving/agreement.py OutputMetrics
batched_only  # builder/int8_search.py
size_bytes, measured_in  # builder/variants.py VariantOutcome
_.size_bytes, _.measured_in
memory_total_mb  # hardware.py
network_server_us, cache_hit_us, cache_miss_us  # perf/analyzer.py PerfPoint
cache_hits, cache_misses, server_ms  # perf/triton_stats.py ModelStats
tritonforge_version, spec_hash, hardware  # repository/manifest.py Manifest

# retired manifest roles: read from manifests of builds of the ensemble layout (tests/unit/repository/test_manifest_read.py)
CACHE, TOKENIZER, PIPELINE, ROUTER


# Triton's Python backend instantiates TritonPythonModel and calls these (serving/triton_models/*.py)
TritonPythonModel
_.initialize, _.execute, _.finalize

# attributes set on foreign objects, read by their owners
_.dont_write_bytecode  # sys: the Python-backend stub must not write bytecode into the repository
_.graph_optimization_level, _.intra_op_num_threads, _.inter_op_num_threads, _.log_severity_level  # ORT SessionOptions
_.preserve_quotes  # ruamel.yaml round trip
_.default_model_filename  # model_config_pb2.ModelConfig (tests/helpers.py)

# onnxruntime.quantization.CalibrationDataReader: the quantizer calls these
_.get_next, _.rewind

# http.server.BaseHTTPRequestHandler hooks (tests/unit/server/test_probe_rule.py)
_.do_GET, _.do_POST, _.log_message

# pytest: hooks, autouse fixtures and module marks
pytest_collection_modifyitems, _unit_tests_start_no_process, pytestmark

# 'module:callable' references named in build specs (YAML) and resolved by tritonforge.spec.refs
validation_batches, calibration_batches, build_encoder  # examples/minilm
token_classifier, untraceable, lstm_regressor  # tests/models/var_length.py

# pydantic model validators (called by pydantic when a source entry is validated)
_._factory, _._path_or_factory  # tritonforge/builder/sources/{pytorch,sklearn_estimator}.py

# build report fields written to build_report.json for readers outside this package (tritonforge report --json)
_.subnormal_weights
