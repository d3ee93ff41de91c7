"""The service process's listening socket."""

from __future__ import annotations

import socket

from scanflow_jupyter.services.server import listen


def test_listen_sets_nodelay_so_answers_are_not_held_by_nagle() -> None:
    sock = listen("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()
