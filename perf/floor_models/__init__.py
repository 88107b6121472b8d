"""Python-backend model sources that perf.miss_path_floor copies into a scratch repository."""
