"""The pipeline's steps (ingest, featurize, train, evaluate, register) and their shared modules.

Each step module has a pure ``run(...)`` core that works on in-memory objects and a thin
``main()`` CLI wrapper that reads its inputs from artifact URIs and logs its outputs to MLflow.
"""
