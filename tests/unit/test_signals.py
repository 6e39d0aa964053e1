"""SIGTERM acts like Ctrl-C, once; a step process's end is explained."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from steps.runtime.signals import Stopped, stop_deferred, stop_like_ctrl_c
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_sigterm_raises_once_then_the_stopping_process_ignores_further_signals(restore_handlers):
    stop_like_ctrl_c(with_parent=False)
    with pytest.raises(Stopped, match="stopped by SIGTERM") as raised:
        os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(raised.value, KeyboardInterrupt)  # every `except KeyboardInterrupt` cleans up
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGINT)  # ignored while stopping: no second exception


def test_a_process_is_stopped_when_its_parent_dies(tmp_path):
    # The parent (a shell) starts a Python child that asks to be stopped with its parent, waits
    # until the child says so, then dies.
    ready = tmp_path / "ready"
    child = (
        f"import sys, time; sys.path.insert(0, {str(PROJECT_ROOT)!r}); from steps.runtime.signals import Stopped, stop_like_ctrl_c\n"
        f"stop_like_ctrl_c(); open({str(ready)!r}, 'w').write('ready')\n"
        "try:\n    time.sleep(30)\nexcept Stopped as exc:\n    print(exc, flush=True)\n"
    )
    script = tmp_path / "child.py"
    script.write_text(child)
    shell = f"{sys.executable} {script} & while [ ! -s {ready} ]; do sleep 0.05; done; kill -KILL $$"
    process = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60, check=False)
    assert process.returncode == -signal.SIGKILL
    # The orphan wrote its line after the shell died; the pipe stays open until it exits.
    assert process.stdout.strip() == "stopped by SIGTERM"


def test_a_stop_during_a_deferred_block_is_acted_on_when_it_ends(restore_handlers):
    stop_like_ctrl_c(with_parent=False)
    done = []
    with pytest.raises(Stopped, match="stopped by SIGTERM"), stop_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("the writes after the signal")
    assert done == ["the writes after the signal"]
