"""Dependencies that are down, for outage tests: a loopback port with nothing listening, and a server that
accepts connections and never answers (a stuck service, or a network that drops replies)."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from devstack.azurite import DEV_ACCOUNT, DEV_KEY, free_port
from gatekeeper.errors import DependencyUnavailable


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


class _LoopbackListener:
    """A TCP listener on 127.0.0.1 whose accept loop runs on a thread until the `with` block ends; each
    accepted connection goes to `_handle`, and every socket it keeps in `_open` is closed at the end."""

    name = "loopback-listener"

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.settimeout(0.05)
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=self.name, daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self._handle(connection)

    def _handle(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._open:
            connection.close()
        self._socket.close()


class SilentServer(_LoopbackListener):
    """Accepts TCP connections on 127.0.0.1 and never sends a byte until stopped."""

    name = "silent-server"

    def __init__(self) -> None:
        super().__init__()
        self.accepted = 0

    def _handle(self, connection: socket.socket) -> None:
        self._open.append(connection)  # keep it open, read nothing, answer nothing
        self.accepted += 1


class SlowAnswerProxy(_LoopbackListener):
    """Forwards TCP connections on 127.0.0.1 to `target_port` and holds every answer back for `delay` seconds:
    the request reaches the real service and takes effect, but the caller's read budget runs out first (a
    reply lost on the way back). What a product does with a write it was not told about shows here."""

    name = "slow-answer-proxy"

    def __init__(self, target_port: int, delay: float) -> None:
        super().__init__()
        self._target = target_port
        self.delay = delay
        self.connections = 0

    def _handle(self, client: socket.socket) -> None:
        self.connections += 1
        upstream = socket.create_connection(("127.0.0.1", self._target))
        self._open += [client, upstream]
        asked = threading.Event()  # a request went up since the last answer came down
        threading.Thread(target=self._pump, args=(client, upstream, asked, False), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, asked, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, asked: threading.Event, answers: bool) -> None:
        try:
            while not self._stop.is_set():
                chunk = source.recv(65536)
                if not chunk:
                    break
                if not answers:
                    asked.set()
                elif asked.is_set():  # the first bytes of an answer: hold them back
                    asked.clear()
                    self._stop.wait(self.delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


class ImpostorServer:
    """Answers every request 200 with an HTML page: what a storage client meets when something else sits where
    the service should (a proxy's sign-in page, a firewall's block page, a private DNS name pointing at a web
    app). Not the service's answer, so it is the service being unavailable, never an internal error."""

    PAGE = b"<html><body>Access to this site is blocked by your organisation's proxy.</body></html>"

    def __init__(self) -> None:
        page = self.PAGE
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.answered += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

            def log_message(self, format: str, *args: object) -> None:
                return

        self.answered = 0
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="impostor", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> ImpostorServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class AuditDownOnce:
    """A tenant's audit log whose first append (of kind `kind`, when given) meets an outage, as the table
    answering nothing would; every other call reaches the real log. Wrappers built with one shared `outage`
    fail once between them (one log seen through several services)."""

    def __init__(self, log: Any, kind: str | None = None, outage: list[bool] | None = None) -> None:
        self.log, self._kind = log, kind
        self._outage = [True] if outage is None else outage

    def _fail_once(self, kinds: Iterable[str]) -> None:
        if self._outage and (self._kind is None or self._kind in kinds):
            self._outage.clear()
            raise DependencyUnavailable("the audit table did not answer", code="storage-unavailable")

    def append(self, kind: str, *args: Any, **kwargs: Any) -> Any:
        self._fail_once((kind,))
        return self.log.append(kind, *args, **kwargs)

    def append_many(self, items: list[Mapping[str, Any]]) -> Any:
        self._fail_once([str(item.get("kind")) for item in items])
        return self.log.append_many(items)

    def __getattr__(self, name: str) -> Any:  # reads (head, entries, records) reach the real log
        return getattr(self.log, name)


def audit_down_once(audit_for: Callable[[str], Any], kind: str | None = None) -> Callable[[str], AuditDownOnce]:
    """`audit_for` whose logs, all tenants together, fail their first append (of `kind`, when given) once."""
    outage = [True]
    return lambda tenant_id: AuditDownOnce(audit_for(tenant_id), kind, outage)
