"""Writing and reading the Triton model repository: configs, model directories, manifest, atomic swap."""
