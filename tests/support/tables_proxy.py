"""A loopback proxy in front of Azurite's Tables endpoint, for races and outages between two writes.

It forwards every request unchanged and answers with what Azurite answers. Two switches drive the bad order:
`interleave(when, hook)` runs `hook` once, right before the first request for which `when(method, path, body)`
holds is forwarded (another writer finishing in between, so this one meets the service's real 409/412), and
`refuse(when)` answers matching requests 503 `ServerBusy` as the service does when it cannot serve (counted in
`refused`), without forwarding them.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

Match = Callable[[str, str, bytes], bool]
WRITES = ("POST", "PUT", "MERGE", "PATCH", "DELETE")


def never(method: str, path: str, body: bytes) -> bool:
    return False


class TablesProxy:
    def __init__(self, connection_string: str) -> None:
        found = re.search(r"TableEndpoint=(http://[^;]+)", connection_string)
        if found is None:
            raise ValueError("the connection string names no http TableEndpoint")
        upstream = urlsplit(found.group(1))
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self._lock = threading.Lock()
        self._when: Match = never
        self._hook: Callable[[], None] = lambda: None
        self._refuse: Match = never
        self.fired = 0
        self.refused: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="tables-proxy", daemon=True)
        port = self._server.server_address[1]
        self.connection_string = connection_string.replace(found.group(1), f"http://127.0.0.1:{port}{upstream.path}")

    def interleave(self, when: Match, hook: Callable[[], None]) -> None:
        with self._lock:
            self._when, self._hook, self.fired = when, hook, 0

    def refuse(self, when: Match) -> None:
        with self._lock:
            self._refuse = when

    def clear(self) -> None:
        with self._lock:
            self._when, self._refuse = never, never

    def _before(self, method: str, path: str, body: bytes) -> bool:
        """True when the request is refused; runs the interleaved hook first when it matches."""
        with self._lock:
            if self._refuse(method, path, body):
                self.refused.append(f"{method} {path}")
                return True
            fire = not self.fired and self._when(method, path, body)
            if fire:
                self.fired = 1
            hook = self._hook
        if fire:
            hook()
        return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._before(self.command, unquote(self.path), body):
                    error = b'{"odata.error":{"code":"ServerBusy","message":{"value":"The server is busy."}}}'
                    self.send_response(503)
                    self.send_header("x-ms-error-code", "ServerBusy")
                    self.send_header("Content-Type", "application/json;odata=minimalmetadata")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                connection = http.client.HTTPConnection(*proxy._upstream, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_POST = do_PUT = do_MERGE = do_DELETE = do_PATCH = _forward

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def __enter__(self) -> TablesProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
