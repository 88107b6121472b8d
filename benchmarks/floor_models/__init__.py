"""Python-backend model sources that benchmarks.miss_path_floor copies into a scratch repository."""
