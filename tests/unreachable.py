"""An address where nothing answers, for testing network errors without a network."""

import socket


def unreachable_url(path: str = "") -> str:
    """`http://127.0.0.1:PORT/path` on a port the OS just handed out and that is closed again: connecting is
    refused at once (a fixed port such as 9 may have a listener on some machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
