"""The pipeline's entry points and the code they share, one folder per layer.

The modules at this level are the entry points MLproject names (``python -m steps <name>``):
the five steps (ingest, featurize, train, evaluate, register), predict, rollback, compare and
the sweep. Each step has a pure ``run(...)`` core on in-memory objects and a thin ``main()``
that reads its inputs from artifact URIs and logs its outputs to MLflow. The shared code lives in
``core/`` (no MLflow), ``mlflow_io/``, ``orchestration/`` (the drivers') and ``runtime/``
(processes); docs/architecture.md draws the map.
"""
