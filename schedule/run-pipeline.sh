#!/usr/bin/env bash
# Run the pipeline once, the way a scheduler (cron, systemd, CI) does: against the tracking
# server named by MLFLOW_TRACKING_URI, from the directory it is started in. Arguments are passed
# on to `mlflow run`, e.g. -P data_uri=s3://bucket/latest.csv.
#
# Environment:
#   MLFLOW_TRACKING_URI    required: where runs and models are recorded (http://..., sqlite:////...)
#   PIPELINE_PROJECT_URI   the project to run: a directory or a git URL (default: this checkout)
#   PIPELINE_VERSION       with a git URL: the tag, branch or commit to run (default: the default branch)
#   PIPELINE_ENV_MANAGER   local (default: the environment this script runs in), uv or virtualenv
#
# Unchanged data and code reuse every step from the cache and register nothing new; new data
# retrains and registers. Overlapping runs wait for each other (see run.overlap in conf/pipeline.yaml).
set -euo pipefail

if [[ -z "${MLFLOW_TRACKING_URI:-}" ]]; then
  echo "error: run-pipeline.sh: set MLFLOW_TRACKING_URI to the tracking server (e.g. http://mlflow.internal:5000)" >&2
  exit 2
fi
project="${PIPELINE_PROJECT_URI:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
version_args=()
if [[ -n "${PIPELINE_VERSION:-}" ]]; then
  version_args=(-v "$PIPELINE_VERSION")
fi
# ${a[@]+...}: an empty array is "unbound" under set -u in bash before 4.4 (macOS).
exec mlflow run "$project" ${version_args[@]+"${version_args[@]}"} --env-manager "${PIPELINE_ENV_MANAGER:-local}" "$@"
