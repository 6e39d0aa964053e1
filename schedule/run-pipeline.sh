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
#   MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD   for a server with authentication
#   MLFLOW_HTTP_REQUEST_MAX_RETRIES / _BACKOFF_FACTOR   how often to retry the server (bounded below)
#
# Unchanged data and code reuse every step from the cache and register nothing new; new data
# retrains and registers. Overlapping runs wait for each other (see run.overlap in conf/pipeline.yaml).
set -euo pipefail

if [[ -z "${MLFLOW_TRACKING_URI:-}" ]]; then
  echo "error: run-pipeline.sh: set MLFLOW_TRACKING_URI to the tracking server (e.g. http://mlflow.internal:5000)" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
project="${PIPELINE_PROJECT_URI:-$here}"
# MLflow retries an unreachable server for about four minutes by default; a scheduled run should
# fail in seconds, with one line saying why. Unset values only: the caller's settings win. (The
# request timeout stays MLflow's: large artifact uploads need it.)
export MLFLOW_HTTP_REQUEST_MAX_RETRIES="${MLFLOW_HTTP_REQUEST_MAX_RETRIES:-2}"
export MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="${MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR:-1}"
# Is the server there, and does it accept our credentials? (exit 2 and one line if not)
(cd "$here" && python -m steps.runtime.tracking)

version_args=()
if [[ -n "${PIPELINE_VERSION:-}" ]]; then
  version_args=(-v "$PIPELINE_VERSION")
fi
# ${a[@]+...}: an empty array is "unbound" under set -u in bash before 4.4 (macOS).
exec mlflow run "$project" ${version_args[@]+"${version_args[@]}"} --env-manager "${PIPELINE_ENV_MANAGER:-local}" "$@"
