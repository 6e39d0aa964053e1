"""The port check behind the summary's serve command."""

from __future__ import annotations

import socket

from steps.runtime import ports
from tests.conftest import free_port


def test_a_port_something_listens_on_is_in_use_and_a_free_one_is_not():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        assert ports.in_use(listener.getsockname()[1])
    assert not ports.in_use(free_port())
