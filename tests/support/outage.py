"""Dependencies that are down, for outage tests: a loopback port with nothing listening, and a server that
accepts connections and never answers (a stuck service, or a network that drops replies)."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from devstack.azurite import DEV_ACCOUNT, DEV_KEY, free_port


def storage_connection_string(*, blob: int, queue: int, table: int) -> str:
    """An Azurite-style connection string whose endpoints are the given loopback ports."""
    host = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint={host}:{blob}/{DEV_ACCOUNT};"
        f"QueueEndpoint={host}:{queue}/{DEV_ACCOUNT};"
        f"TableEndpoint={host}:{table}/{DEV_ACCOUNT};"
    )


def dead_port() -> int:
    """A loopback port nobody listens on: connections are refused at once."""
    return free_port()


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte until stopped."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.settimeout(0.05)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self.accepted = 0

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(connection)  # keep it open, read nothing, answer nothing
            self.accepted += 1

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._socket.close()
