"""The core: the pipeline's logic with no MLflow in it (config checks, data, features, the model, the gate)."""
