"""MLflow I/O: artifacts, the contracts between steps (tags, manifest, evaluation result), the registry, cards."""
