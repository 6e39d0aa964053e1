"""Benchmark re-runs: a cold pipeline run, the same command again, and a new alpha.

Each repetition uses a fresh tracking store in a temporary directory and times the whole
`mlflow run <project> --env-manager local` command (what a user waits for). Prints a table of
median, min and max wall times and the ratios to the cold run, and writes it to a Markdown file.

    python benchmarks/rerun.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "cold (empty store), -P alpha=0.3": ["alpha=0.3"],
    "warm (same command again)": ["alpha=0.3"],
    "new alpha, -P alpha=0.5": ["alpha=0.5"],
}


def timed_run(workdir: Path, params: list[str]) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [sys.executable, "-m", "mlflow", "run", str(PROJECT_ROOT), "--env-manager", "local"]
    for param in params:
        args += ["-P", param]
    start = time.perf_counter()
    process = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"benchmark run failed ({' '.join(params)}):\n{process.stderr[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of the three scenarios")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "benchmarks" / "rerun-results.md")
    args = parser.parse_args(argv)

    times: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            for name, params in SCENARIOS.items():
                times[name].append(timed_run(Path(tmp), params))

    cold = statistics.median(times[next(iter(SCENARIOS))])
    lines = [
        f"Re-run benchmark: {args.repeat} repetition(s), {os.cpu_count()} CPU(s), example data, --env-manager local",
        "",
        "| scenario | median (s) | min (s) | max (s) | median / cold |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.1f} | {min(values):.1f} | {max(values):.1f} | {median / cold:.2f} |")
    table = "\n".join(lines)
    print(table)  # noqa: T201 - the benchmark's report
    args.output.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
