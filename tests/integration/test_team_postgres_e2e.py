"""Team mode on PostgreSQL: test_team_e2e.py's store-dependent scenarios, with the server's runs and
registry in a real PostgreSQL (Debian's `postgresql` package).

The module starts a throwaway cluster in a temporary directory (its own port on 127.0.0.1, its
socket beside its data), creates the two databases, runs `mlflow server --backend-store-uri
postgresql://…` against them and stops the server, then the cluster, when the module ends, even
after a failure. Missing PostgreSQL is installed with apt-get when we are root; the module is
skipped only where that cannot be done.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.test_team_e2e import (
    Team,
    team_against,
    # The scenarios whose outcome depends on the store, collected again here with this module's `team`:
    test_the_pipeline_runs_unchanged_against_the_server_with_proxied_artifacts,  # noqa: F401
    test_the_same_command_again_reuses_every_step_through_the_server,  # noqa: F401
    three_pipelines_at_once_on_three_machines_leave_the_best_as_champion,
)

pytestmark = pytest.mark.e2e

INSTALLED = Path("/usr/lib/postgresql")  # Debian's layout: /usr/lib/postgresql/<major>/bin
INSTALL = ("apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql")
INSTALL_SECONDS = 600
# initdb and the server refuse to run as root; Debian's package creates this user.
SERVER_USER = "postgres"


def installed_bin() -> Path | None:
    """The bin directory of the newest PostgreSQL under INSTALLED (else the one on PATH) with initdb and pg_ctl, or None."""
    found = [d for d in INSTALLED.glob("*/bin") if (d / "initdb").is_file() and (d / "pg_ctl").is_file()]
    newest = max(found, key=lambda d: [int(n) for n in d.parent.name.split(".") if n.isdigit()], default=None)
    on_path = shutil.which("initdb")
    if newest is None and on_path and shutil.which("pg_ctl", path=str(Path(on_path).parent)):
        return Path(on_path).parent
    return newest


def why_not_installable() -> str | None:
    """Install Debian's `postgresql` package; None when that worked, else why it cannot be."""
    if os.geteuid() != 0:
        return f"no initdb/pg_ctl under {INSTALLED}/*/bin, and installing the package needs root"
    if not shutil.which("apt-get"):
        return f"no initdb/pg_ctl under {INSTALLED}/*/bin, and no apt-get to install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (("apt-get", "update", "-q"), INSTALL):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            return f"`{' '.join(command)}` failed (exit {done.returncode}): {last}"
    return None


def postgres_bin() -> Path:
    """PostgreSQL's bin directory, installing the package first if needed; skips only where it cannot be."""
    found = installed_bin()
    if found is None:
        why = why_not_installable()
        found = installed_bin()
        if found is None:
            pytest.skip(f"PostgreSQL is not installed and cannot be installed here: {why or 'the package has no initdb/pg_ctl'}")
    return found


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster on 127.0.0.1, with one password-protected superuser."""

    bin_dir: Path
    port: int
    user: str
    password: str

    def uri(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        args = [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name]
        _run(args, f"createdb {name}", env={**os.environ, "PGPASSWORD": self.password})


def _as_server_user(root: Path) -> list[str]:
    """The command prefix that runs initdb and the server as a non-root user owning ``root``."""
    if os.geteuid() != 0:
        return []
    try:
        owner = pwd.getpwnam(SERVER_USER)
    except KeyError:
        pytest.skip(f"PostgreSQL cannot be started here: initdb refuses root and there is no {SERVER_USER!r} user")
    os.chown(root, owner.pw_uid, owner.pw_gid)
    return ["runuser", "-u", SERVER_USER, "--"]


def _run(args: list[str], what: str, *, log: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run a PostgreSQL command; fail the tests with its output (and the server's ``log``) if it fails."""
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        server_log = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        pytest.fail(f"{what} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}\n{server_log}")


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """initdb + pg_ctl start in a temporary directory; pg_ctl stop and the directory removed after."""
    bin_dir = postgres_bin()
    # Not pytest's tmp_path: that is private to this user, and the server runs as another.
    root = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
    try:
        as_owner = _as_server_user(root)
        cluster = PostgresCluster(bin_dir=bin_dir, port=free_port(), user="mlflow", password=secrets.token_hex(12))
        password_file, data, log = root / "password", root / "data", root / "postgres.log"
        password_file.write_text(cluster.password)
        if as_owner:
            shutil.chown(password_file, SERVER_USER, SERVER_USER)
        initdb = [*as_owner, str(bin_dir / "initdb"), "-D", str(data), "-U", cluster.user, f"--pwfile={password_file}"]
        _run([*initdb, "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"], "initdb")
        options = f"-h 127.0.0.1 -p {cluster.port} -k {root}"  # TCP on loopback only; the socket in root
        pg_ctl = [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60"]
        _run([*pg_ctl, "-l", str(log), "-o", options, "start"], "pg_ctl start", log=log)
        try:
            yield cluster
        finally:
            stopped = subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True, timeout=90, check=False)
            if stopped.returncode != 0 and (data / "postmaster.pid").exists():
                os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGQUIT)  # immediate shutdown
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> Iterator[Team]:
    """test_team_e2e.py's team setup, with runs and registry in PostgreSQL (no basic auth)."""
    with postgres_cluster() as cluster:
        cluster.create_database("mlflow")
        # No basic auth here (users are tested on test_team_e2e.py's server): it checks the
        # password's hash on every request, which doubled this module's time.
        with team_against(tmp_path_factory.mktemp("team-postgres"), backend_store_uri=cluster.uri("mlflow"), basic_auth=False) as team:
            yield team


def test_three_pipelines_at_once_on_three_machines_leave_the_best_as_champion(team, tmp_path):
    three_pipelines_at_once_on_three_machines_leave_the_best_as_champion(team, tmp_path)
