"""Benchmark the pipeline against a baseline chain and a single-process floor, and its scaling.

Everything is measured on this machine in one invocation, so the ratios compare like with like:

1. Example data (``--repeat`` times, each in a fresh tracking store): this pipeline cold (empty
   store), warm (the same command again) and after a new ``alpha``; the baseline chain
   (benchmarks/baseline: MLflow's multistep-example style, no cache, default model logging); the
   single-process floor (benchmarks/floor.py, no MLflow). Median, min and max wall times.
2. Per-step overhead of the cold runs: the step's wall time as the driver saw it, minus the work
   the step's process measured itself (``step_work_seconds``: reading inputs, the step's core,
   logging outputs); ``step_startup_seconds`` is the part spent starting the process (interpreter,
   imports, run start).
3. Scaling: generated data shaped like the example (benchmarks/make_data.py) at each ``--sizes``:
   wall time and peak RSS of each step process, against the floor on the same file. At the largest
   size the pipeline is judged against 2 x its floor + the fixed overhead; the fixed overhead is
   pipeline minus floor in a run at the smallest size (10k rows), always made in the same
   invocation (also when ``--sizes`` leaves it out), so the verdict can fail.
4. Levers: each optimisation measured on its own (step launch, model logging, CSV engine, split
   format, imports).

    python benchmarks/benchmark.py                          # everything (10M rows: ~1 GB CSV, ~30 min)
    python benchmarks/benchmark.py --sizes 10k,100k --repeat 1   # a quick look

It prints the tables, then a summary (cold run / baseline chain, warm run vs the no-op
``mlflow run`` + 2 s, the large-data verdict), and writes them to ``--output`` (default
benchmarks/results.md). The example data alone, quickly: ``--skip scaling,levers --repeat 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = PROJECT_ROOT / "benchmarks"
EXAMPLE_DATA = PROJECT_ROOT / "data" / "example_data.csv"
STEPS = ("ingest", "featurize", "train", "evaluate", "register")
ALPHA, NEW_ALPHA = "0.3", "0.5"
SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}

# The targets.
COLD_TARGET, WARM_TARGET, OVERHEAD_TARGET, MEMORY_TARGET, SCALE_TARGET = 0.6, 0.15, 2.5, 2.5, 2.0
# A warm run should cost no more than this many seconds on top of a no-op `mlflow run`.
WARM_OVER_NOOP = 2.0
# The size whose run gives the pipeline's fixed overhead (pipeline minus floor) for the large-data
# verdict: the smallest, always measured, never the size being judged.
OVERHEAD_SIZE = min(SIZES, key=SIZES.__getitem__)

logger = logging.getLogger("benchmark")


def _env(store: Path) -> dict[str, str]:
    """The environment of a measured command: this interpreter's tools first, ``store``'s database."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        env.pop(name, None)
    return env


def _timed(args: Sequence[str], cwd: Path, what: str) -> tuple[float, str]:
    start = time.perf_counter()
    process = subprocess.run(list(args), cwd=cwd, env=_env(cwd), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{what} failed (exit {process.returncode}):\n{process.stderr[-4000:]}")
    return elapsed, process.stdout


def run_pipeline(store: Path, data: Path, alpha: str) -> float:
    args = [sys.executable, "-m", "mlflow", "run", str(PROJECT_ROOT), "--env-manager", "local"]
    args += ["-P", f"alpha={alpha}", "-P", f"data_uri={data}"]
    return _timed(args, store, f"pipeline on {data.name}, alpha={alpha}")[0]


def run_baseline(store: Path, data: Path, alpha: str) -> float:
    args = [sys.executable, "-m", "mlflow", "run", str(BENCHMARKS / "baseline"), "--env-manager", "local"]
    args += ["-P", f"data_path={data}", "-P", f"alpha={alpha}"]
    return _timed(args, store, f"baseline chain on {data.name}")[0]


def run_noop(store: Path) -> float:
    args = [sys.executable, "-m", "mlflow", "run", str(BENCHMARKS / "noop"), "--env-manager", "local"]
    return _timed(args, store, "the no-op project")[0]


def run_floor(store: Path, data: Path, alpha: str) -> tuple[float, dict]:
    elapsed, stdout = _timed([sys.executable, str(BENCHMARKS / "floor.py"), "--data", str(data), "--alpha", alpha], store, "floor")
    return elapsed, json.loads(stdout.strip().splitlines()[-1])


@dataclass
class StepFigures:
    wall: float  # as the driver saw it: decide, launch, wait, collect outputs
    work: float  # measured by the step's process around its own work
    startup: float  # the step's process before its work: interpreter, imports, run start
    peak_rss_mb: float


def step_figures(store: Path) -> dict[str, StepFigures]:
    """The figures of each step of the newest pipeline run in ``store`` (steps that ran, not reused)."""
    from mlflow import MlflowClient  # noqa: PLC0415 - only the measuring parts need MLflow

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs(["0"], order_by=["attributes.start_time DESC"], max_results=200)
    parent = next(r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "main")
    figures = {}
    for step in STEPS:
        run_id = parent.data.tags.get(f"pipeline.{step}.run_id")
        if parent.data.tags.get(f"pipeline.{step}.status") != "FINISHED" or not run_id:
            continue
        metrics = client.get_run(run_id).data.metrics
        figures[step] = StepFigures(
            wall=float(parent.data.tags[f"pipeline.{step}.seconds"]),
            work=metrics["step_work_seconds"],
            startup=metrics.get("step_startup_seconds", float("nan")),
            peak_rss_mb=metrics.get("step_peak_rss_mb", float("nan")),
        )
    return figures


@dataclass
class Series:
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def cells(self) -> str:
        return f"{self.median:.1f} | {min(self.values):.1f} | {max(self.values):.1f}"


def check(ok: bool) -> str:
    return "met" if ok else "NOT met"


@dataclass(frozen=True)
class ScaleVerdict:
    """Large data: is the pipeline within ``factor`` x the floor plus the fixed overhead measured on small data?"""

    pipeline: float  # seconds, the run being judged
    floor: float  # seconds, the floor on the same data
    overhead: float  # seconds, pipeline minus floor on small data (another run)
    factor: float

    @property
    def bound(self) -> float:
        return self.factor * self.floor + self.overhead

    @property
    def met(self) -> bool:
        return self.pipeline <= self.bound


def scale_verdict(pipeline: float, floor: float, small_pipeline: float, small_floor: float, factor: float = SCALE_TARGET) -> ScaleVerdict:
    """The verdict on a large-data run (``pipeline`` and ``floor`` seconds on the same data), its fixed
    overhead taken from a small-data run (``small_pipeline`` minus ``small_floor``), never from the
    run it judges: with that run's own difference the bound is ``pipeline + (factor - 1) x floor``,
    which no pipeline can exceed."""
    return ScaleVerdict(pipeline=pipeline, floor=floor, overhead=small_pipeline - small_floor, factor=factor)


def example_section(repeat: int, summary: list[str]) -> list[str]:
    scenarios = {
        f"pipeline cold (empty store), -P alpha={ALPHA}": Series(),
        "pipeline warm (same command again)": Series(),
        f"pipeline after a new alpha, -P alpha={NEW_ALPHA}": Series(),
        "baseline chain (multistep-example style)": Series(),
        "floor: one process, no MLflow": Series(),
        "`mlflow run` of a project that only starts and ends its run": Series(),
    }
    cold, warm, new_alpha, baseline, floor, noop = scenarios.values()
    steps: dict[str, dict[str, Series]] = {s: {k: Series() for k in ("wall", "work", "overhead", "startup")} for s in STEPS}
    for round_number in range(1, repeat + 1):
        logger.info("example data: round %d of %d", round_number, repeat)
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp)
            cold.add(run_pipeline(store, EXAMPLE_DATA, ALPHA))
            for step, figures in step_figures(store).items():
                steps[step]["wall"].add(figures.wall)
                steps[step]["work"].add(figures.work)
                steps[step]["overhead"].add(figures.wall - figures.work)
                steps[step]["startup"].add(figures.startup)
            warm.add(run_pipeline(store, EXAMPLE_DATA, ALPHA))
            new_alpha.add(run_pipeline(store, EXAMPLE_DATA, NEW_ALPHA))
        with tempfile.TemporaryDirectory() as tmp:
            baseline.add(run_baseline(Path(tmp), EXAMPLE_DATA, ALPHA))
        with tempfile.TemporaryDirectory() as tmp:
            floor.add(run_floor(Path(tmp), EXAMPLE_DATA, ALPHA)[0])
        with tempfile.TemporaryDirectory() as tmp:
            run_noop(Path(tmp))  # creates the store, as the cold pipeline run did for the warm one
            noop.add(run_noop(Path(tmp)))

    lines = [
        f"## Example data ({EXAMPLE_DATA.name}, {repeat} round(s), a fresh tracking store each)",
        "",
        "| scenario | median (s) | min (s) | max (s) | median / baseline chain |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {name} | {series.cells()} | {series.median / baseline.median:.2f} |" for name, series in scenarios.items()]
    worst = max(s["overhead"].median for s in steps.values())
    cold_ratio, warm_ratio, warm_bound = cold.median / baseline.median, warm.median / baseline.median, noop.median + WARM_OVER_NOOP
    cold_line = (
        f"- Cold run: {cold.median:.1f} s / baseline chain {baseline.median:.1f} s = {cold_ratio:.2f}x the baseline chain "
        f"(target <= {COLD_TARGET}x: {check(cold_ratio <= COLD_TARGET)})."
    )
    warm_line = (
        f"- Warm run: {warm.median:.1f} s = no-op `mlflow run` {noop.median:.1f} s + {warm.median - noop.median:.1f} s "
        f"(target <= no-op + {WARM_OVER_NOOP:g} s = {warm_bound:.1f} s: {check(warm.median <= warm_bound)}); "
        f"{warm_ratio:.2f}x the baseline chain (target <= {WARM_TARGET}x: {check(warm_ratio <= WARM_TARGET)})."
    )
    summary += [cold_line, warm_line]
    lines += [
        "",
        cold_line,
        warm_line,
        f"- `mlflow run` of a project that does nothing costs {noop.median:.1f} s = {noop.median / baseline.median:.2f}x here, "
        "the least any re-run through `mlflow run` can cost.",
        "",
        "### Per-step overhead (cold runs, medians)",
        "",
        "Overhead = the step's wall time as the driver saw it minus the work its process measured; start-up is part of it.",
        "",
        "| step | wall (s) | work (s) | overhead (s) | of which process start-up (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for step, series in steps.items():
        lines.append(
            f"| {step} | {series['wall'].median:.2f} | {series['work'].median:.2f} | {series['overhead'].median:.2f} "
            f"| {series['startup'].median:.2f} |"
        )
    lines += ["", f"- Largest per-step overhead: {worst:.2f} s (target <= {OVERHEAD_TARGET} s: {check(worst <= OVERHEAD_TARGET)})."]
    return lines


def in_memory_mb(data: Path, rows: int) -> float:
    """The data's size as a pandas DataFrame, from a sample of its rows scaled to ``rows``."""
    import pandas as pd  # noqa: PLC0415

    sample = pd.read_csv(data, nrows=min(rows, 100_000))
    return sample.memory_usage(deep=True, index=False).sum() / len(sample) * rows / 1e6


def scaling_section(sizes: Sequence[str], summary: list[str]) -> list[str]:
    """The scaling table for ``sizes`` and the large-data verdicts at the largest; ``OVERHEAD_SIZE`` is
    always run too (first), for the fixed overhead the time verdict adds to the floor."""
    runs = sorted({*sizes, OVERHEAD_SIZE}, key=SIZES.__getitem__)
    header = " | ".join(f"{s} (s / MB)" for s in STEPS)
    lines = [
        "## Scaling (generated data shaped like the example; one cold run per size)",
        "",
        "Each step: wall time as the driver saw it / peak RSS of the step's process. Floor: the same work in one process.",
        "",
        f"| rows | data in memory (MB) | {header} | pipeline (s) | floor (s / MB) | max step RSS / data | pipeline / floor |",
        "|---:|---:|" + "---:|" * len(STEPS) + "---:|---:|---:|---:|",
    ]
    measured: dict[str, tuple[float, float, float, float]] = {}  # size: pipeline (s), floor (s), max step RSS (MB), data (MB)
    for label in runs:
        rows = SIZES[label]
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp)
            data = store / f"data-{label}.csv"
            logger.info("scaling: generating %s rows", label)
            _timed([sys.executable, str(BENCHMARKS / "make_data.py"), "--rows", str(rows), "--output", str(data)], store, "make_data")
            size_mb = in_memory_mb(data, rows)
            logger.info("scaling: pipeline on %s rows", label)
            total = run_pipeline(store, data, ALPHA)
            figures = step_figures(store)
            logger.info("scaling: floor on %s rows", label)
            floor_total, floor = run_floor(store, data, ALPHA)
        cells = " | ".join(f"{figures[s].wall:.1f} / {figures[s].peak_rss_mb:.0f}" if s in figures else "-" for s in STEPS)
        peak = max(f.peak_rss_mb for f in figures.values())
        measured[label] = (total, floor_total, peak, size_mb)
        note = " (fixed overhead run)" if label not in sizes else ""
        lines.append(
            f"| {rows:,}{note} | {size_mb:.0f} | {cells} | {total:.1f} | {floor_total:.1f} / {floor.get('peak_rss_mb', float('nan')):.0f} "
            f"| {peak / size_mb:.2f} | {total / floor_total:.2f} |"
        )

    # The targets are about large data; on small data the interpreter alone outweighs it.
    largest = runs[-1]
    small_total, small_floor, _, _ = measured[OVERHEAD_SIZE]
    total, floor_total, peak, size_mb = measured[largest]
    lines += [
        "",
        f"Fixed overhead = pipeline minus floor in this invocation's {SIZES[OVERHEAD_SIZE]:,}-row run: {small_total:.1f} s - "
        f"{small_floor:.1f} s = {small_total - small_floor:.1f} s (what the pipeline adds when there is hardly any data). "
        f"That run is always made, also when --sizes leaves it out, and is never the run judged.",
        "",
        f"- {largest} rows: peak step RSS {peak:.0f} MB = {peak / size_mb:.2f}x the data (target <= {MEMORY_TARGET}x: "
        f"{check(peak / size_mb <= MEMORY_TARGET)}).",
    ]
    if largest == OVERHEAD_SIZE:
        verdict_line = (
            f"- Large data, pipeline <= {SCALE_TARGET:g} x floor + fixed overhead: no verdict, the largest size ({largest}) is the run "
            f"the fixed overhead comes from; add a larger one to --sizes."
        )
    else:
        verdict = scale_verdict(total, floor_total, small_total, small_floor)
        verdict_line = (
            f"- {largest} rows: pipeline {total:.1f} s vs {SCALE_TARGET:g} x floor {floor_total:.1f} s + fixed overhead "
            f"{verdict.overhead:.1f} s (the {OVERHEAD_SIZE}-row run's pipeline minus floor) = {verdict.bound:.1f} s "
            f"(target: {check(verdict.met)})."
        )
    lines.append(verdict_line)
    summary.append(verdict_line)
    return lines


def _median_time(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def levers_section(repeat: int) -> list[str]:
    """Each lever on its own: the slow way and the way the pipeline does it (seconds unless it says MB)."""
    lines = [
        "## Levers (each measured alone; medians)",
        "",
        "| lever | slow way | pipeline's way | saved |",
        "|---|---:|---:|---:|",
    ]
    for name, slow, fast in _lever_measurements(repeat):
        lines.append(f"| {name} | {slow:.2f} | {fast:.2f} | {slow - fast:.2f} |")
    return lines


def _lever_measurements(repeat: int) -> list[tuple[str, float, float]]:
    import mlflow  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    from sklearn.linear_model import ElasticNet  # noqa: PLC0415

    results = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        store = Path(tmp)
        # This process's store, with its artifacts (./mlruns) in the same temporary directory.
        os.environ.update(_env(store))
        for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
            os.environ.pop(name, None)

        # Launching one step (ingest on the example data): through an extra `mlflow run` process
        # (asynchronous mlflow.run) or as the caller's own child (synchronous, what main.py does).

        def launch(synchronous: bool) -> None:
            parameters = {"data_uri": str(EXAMPLE_DATA)}
            submitted = mlflow.run(
                str(PROJECT_ROOT), entry_point="ingest", parameters=parameters, env_manager="local", synchronous=synchronous
            )
            if not synchronous and not submitted.wait():
                raise SystemExit("ingest failed")

        results.append(
            (
                "launch a step: extra `mlflow run` process vs synchronous mlflow.run",
                _median_time(lambda: launch(False), repeat),
                _median_time(lambda: launch(True), repeat),
            )
        )

        # Model logging: MLflow's dependency inference vs the explicit pins train.py passes.
        frame = pd.read_csv(EXAMPLE_DATA)
        features, target = frame.drop(columns="target"), frame["target"]
        model = ElasticNet(alpha=0.3).fit(features, target)
        sys.path.insert(0, str(PROJECT_ROOT))
        from steps.core.model import requirements as model_requirements  # noqa: PLC0415

        def log(explicit: bool) -> None:
            with mlflow.start_run():
                mlflow.sklearn.log_model(model, name="model", pip_requirements=model_requirements() if explicit else None)

        results.append(
            (
                "log the model: inferred vs explicit pip requirements",
                _median_time(lambda: log(False), repeat),
                _median_time(lambda: log(True), repeat),
            )
        )

        # Reading a 5M-row CSV, and passing a 1M-row split between steps as CSV or Parquet.
        data = store / "5M.csv"
        _timed([sys.executable, str(BENCHMARKS / "make_data.py"), "--rows", "5000000", "--output", str(data)], store, "make_data")
        pandas_read = [_read_in_process("pd.read_csv(path)", data) for _ in range(repeat)]
        ours_read = [_read_in_process("read_table_with_digest(str(path), float_columns=FLOATS)[0]", data) for _ in range(repeat)]
        results.append(
            (
                "read a 5M-row CSV: time, pandas C reader vs the pipeline (which also hashes the file)",
                statistics.median(t for t, _ in pandas_read),
                statistics.median(t for t, _ in ours_read),
            )
        )
        results.append(
            (
                "read a 5M-row CSV: peak memory above the frame's own size (MB), same two",
                statistics.median(m for _, m in pandas_read),
                statistics.median(m for _, m in ours_read),
            )
        )
        split = pd.read_csv(data, nrows=1_000_000)

        def round_trip(fmt: str) -> None:
            path = store / f"split.{fmt}"
            if fmt == "csv":
                split.to_csv(path, index=False)
                pd.read_csv(path)
            else:
                split.to_parquet(path, index=False)
                pd.read_parquet(path)

        results.append(
            (
                "hand a 1M-row split to the next step: CSV vs Parquet (write + read)",
                _median_time(lambda: round_trip("csv"), repeat),
                _median_time(lambda: round_trip("parquet"), repeat),
            )
        )
    return results


def _read_in_process(expression: str, path: Path) -> tuple[float, float]:
    """Seconds and peak memory of one read in a fresh process: MB above its resident size before
    the read, minus the frame's own size (Linux: /proc)."""
    code = (
        "import json, resource, sys, time; from pathlib import Path; import pandas as pd; import pyarrow.csv\n"
        "from steps.mlflow_io.artifacts import read_table_with_digest; from steps.core.schema import load_schema\n"
        "FLOATS = load_schema('conf/schema.yaml').float_columns; path = Path(sys.argv[1])\n"
        "before = int(Path('/proc/self/statm').read_text().split()[1]) * resource.getpagesize() / 2**20\n"
        "start = time.perf_counter()\n"
        f"frame = {expression}\n"
        "seconds = time.perf_counter() - start\n"
        "extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before - frame.memory_usage(deep=True).sum() / 2**20\n"
        "print(json.dumps([seconds, extra]))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    seconds, extra = json.loads(out.strip().splitlines()[-1])
    return seconds, extra


def imports_section(repeat: int) -> list[str]:
    """What starting each step's process costs before its work: the interpreter and its imports."""
    base = _median_time(lambda: _python("import mlflow"), repeat)
    lines = [
        "## Imports (a fresh process importing the step's module; medians)",
        "",
        f"`python -c 'import mlflow'` alone: {base:.2f} s. MLflow's SQLite store adds about 1 s more when a step first uses it.",
        "",
        "| step module | import (s) | on top of MLflow (s) |",
        "|---|---:|---:|",
    ]
    for step in STEPS:
        seconds = _median_time(lambda step=step: _python(f"import steps.{step}"), repeat)
        lines.append(f"| steps.{step} | {seconds:.2f} | {seconds - base:.2f} |")
    return lines


def _python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds on the example data (and repetitions of each lever)")
    parser.add_argument(
        "--sizes",
        default=",".join(SIZES),
        help=f"data sizes for the scaling table, from {', '.join(SIZES)} ({OVERHEAD_SIZE} is always run too: the fixed overhead)",
    )
    parser.add_argument("--skip", default="", help="sections to leave out: example, scaling, levers (comma-separated)")
    parser.add_argument("--output", type=Path, default=BENCHMARKS / "results.md", help="where the tables are written")
    args = parser.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"--sizes: unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    skip = {s for s in args.skip.split(",") if s}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if shutil.which("mlflow", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit(f"mlflow is not installed for {sys.executable}: pip install -r requirements-dev.txt")

    started = time.perf_counter()
    summary: list[str] = []
    lines = [
        "# Benchmark results",
        "",
        f"Measured by `python benchmarks/benchmark.py --repeat {args.repeat} --sizes {','.join(sizes)}` on {os.cpu_count()} CPU(s), "
        f"{time.strftime('%Y-%m-%d')}; `--env-manager local`, SQLite tracking store.",
        "",
    ]
    if "example" not in skip:
        lines += [*example_section(args.repeat, summary), ""]
    if "scaling" not in skip and sizes:
        lines += [*scaling_section(sizes, summary), ""]
    if "levers" not in skip:
        lines += [*levers_section(args.repeat), "", *imports_section(args.repeat), ""]
    if summary:
        lines += ["## Summary", "", *summary, ""]
    lines.append(f"Benchmark took {(time.perf_counter() - started) / 60:.1f} min.")
    report = "\n".join(lines)
    print(report)  # noqa: T201 - the benchmark's report
    args.output.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
