"""The one local HTTP server base every development fake builds on (GitHub, Azure DevOps, webhook
receiver, Graph, Durable HTTP API): a threaded server on 127.0.0.1 (free port) that records every
request, can be told to fail, and never prints headers in `report()` or `RecordedRequest.summary()`.

The tests run the real clients (requests, msgraph-sdk, azure-functions-durable) against the fakes; the
demo starts them and prints `report()`. One module per fake sits beside this one.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from azure.core.credentials import AccessToken

Response = tuple[int, dict[str, str], bytes]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def empty_response(status: int) -> Response:
    return status, {}, b""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # percent-decoded, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int  # what the server answered

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def summary(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@dataclass
class _Failure:
    remaining: int
    status: int
    path_contains: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


class LoopbackServer:
    """The shared lifecycle of every local fake: a ThreadingHTTPServer on a free 127.0.0.1 port (TLS when
    `ssl_context` gives one), served from a daemon thread, usable as a context manager. Subclasses supply
    the request handler class."""

    name = "local server"

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def ssl_context(self) -> ssl.SSLContext | None:
        return None

    def start(self) -> Self:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class())
        server.daemon_threads = True
        context = self.ssl_context()
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._server.server_address[1])


class LocalServer(LoopbackServer):
    """A recording fake: every request is kept (`requests`, `report()`), failures can be injected
    (`fail_next`), and subclasses answer through `route`."""

    name = "local server"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._huge: list[list[Any]] = []
        self.huge_written: list[int] = []
        self._lock = threading.Lock()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                huge = owner._take_huge(unquote(parts.path))
                if huge is not None:
                    owner._record(self.command, unquote(parts.path), parse_qs(parts.query), headers, body, 200)
                    self._stream_huge(huge)
                    return
                status, out_headers, payload = owner._dispatch(
                    self.command, unquote(parts.path), parse_qs(parts.query), headers, body
                )
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            def _stream_huge(self, size: int) -> None:
                """A JSON answer of `size` bytes with no Content-Length (the end is the connection's), written
                in 64 KiB pieces until done or the client hangs up; `huge_written` counts what went out."""
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                piece, written = b" " * 65536, 0
                try:
                    self.wfile.write(b"[")
                    while written < size:
                        self.wfile.write(piece)
                        written += len(piece)
                    self.wfile.write(b"]")
                except OSError:  # the client closed the connection: what it took is what was written
                    pass
                finally:
                    owner.huge_written.append(written)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # behaviour
    def fail_next(
        self,
        times: int,
        status: int = 502,
        *,
        path_contains: str = "",
        retry_after: int | str | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (and `Retry-After`: seconds, or any text such
        as an HTTP date), then behave."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._failures.append(_Failure(times, status, path_contains, headers, body))

    def answer_huge(self, times: int, size: int, *, path_contains: str = "") -> None:
        """Answer the next `times` matching requests 200 with a JSON body of `size` bytes and no Content-Length
        (a vendor, or whoever answers in its place, that never stops); `huge_written` records, per answer, how
        many bytes went out before the client hung up (a bounded client stops near its bound)."""
        with self._lock:
            self._huge.append([times, size, path_contains])

    def _take_huge(self, path: str) -> int | None:
        with self._lock:
            for entry in self._huge:
                if entry[0] > 0 and entry[2] in path:
                    entry[0] -= 1
                    return int(entry[1])
        return None

    def _record(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes, status: int
    ) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, headers, body, status))

    def requests_to(self, path_contains: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if path_contains in r.path and (method is None or r.method == method)]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()

    def report(self) -> list[str]:
        with self._lock:
            return [r.summary() for r in self.requests]

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        injected: Response | None = None
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and failure.path_contains in path:
                    failure.remaining -= 1
                    payload = failure.body if failure.body is not None else self._failure_body(failure.status)
                    injected = json_response(failure.status, payload, failure.headers)
                    break
        if injected is None:
            try:
                injected = self.route(method, path, query, headers, body)
            except Exception as exc:  # a stand-in bug must surface as a 500, not a hung client
                injected = json_response(500, {"message": f"local server error: {type(exc).__name__}: {exc}"})
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, headers, body, injected[0]))
        return injected

    def _failure_body(self, status: int) -> Any:
        return {"message": f"injected failure {status}"}

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        raise NotImplementedError


def bearer_token(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "token") and token.strip() else None


# --- GitHub ------------------------------------------------------------------------------------------


class StaticTokenCredential:
    """A `TokenCredential` that hands out one fixed bearer token (local Graph stand-in, demo). Records the
    scopes it was asked for. Its repr never shows the token."""

    def __init__(self, token: str, *, expires_in: int = 3600):
        self._token = token
        self._expires_in = expires_in
        self.scopes_requested: list[tuple[str, ...]] = []

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=***)"

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes_requested.append(scopes)
        return AccessToken(self._token, int(time.time()) + self._expires_in)
