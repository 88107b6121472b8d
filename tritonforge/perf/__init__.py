"""tritonforge perf: perf_analyzer sweeps, reports, configuration search and regression gates."""
