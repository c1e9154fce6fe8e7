"""The app's registered HTTP functions served over real HTTP on 127.0.0.1, with App Service authentication
played in front of them, so a real browser (headless Chromium) can use the approval page.

What it does, as the Functions host and App Service's authentication module do:
- matches `/api/<route>` against the routes and methods the function app registered, builds an
  `azure.functions.HttpRequest` (headers, query, route parameters, body) and calls the registered user
  function, handing a `durable_client_input` binding the local Durable HTTP API's binding JSON;
- strips every `X-MS-CLIENT-PRINCIPAL*` header a client sent, and sets its own for a signed-in session;
- `/.auth/login/aad?post_login_redirect_uri=/path` signs in the identity the caller configured
  (`sign_in_as`): a session cookie, then a 302 back to the (relative) path. Nothing else is served.
Development only: never deployed, and no product module imports it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import json
import re
import secrets
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import azure.functions as func

from devstack.server import LoopbackServer

SESSION_COOKIE = "AppServiceAuthSession"
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TID_CLAIM = "http://schemas.microsoft.com/identity/claims/tenantid"
NAME_CLAIM = "name"
UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class SignedInUser:
    """Who App Service authentication says is signed in (the claims of its X-MS-CLIENT-PRINCIPAL)."""

    oid: str
    tid: str
    name: str = ""
    upn: str = ""

    def client_principal(self) -> str:
        claims = [{"typ": OID_CLAIM, "val": self.oid}, {"typ": TID_CLAIM, "val": self.tid}]
        if self.name:
            claims.append({"typ": NAME_CLAIM, "val": self.name})
        if self.upn:
            claims.append({"typ": UPN_CLAIM, "val": self.upn})
        document = {"auth_typ": "aad", "name_typ": NAME_CLAIM, "role_typ": "roles", "claims": claims}
        return base64.b64encode(json.dumps(document).encode()).decode()


@dataclass(frozen=True)
class _Route:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    function: Callable[..., Any]
    durable_parameter: str | None


def _pattern(route: str) -> str:
    """A Functions route template (`approvals/{instance_id}/page`) as a regular expression."""
    out, pos = "", 0
    for match in re.finditer(r"\{(\w+)\}", route):
        out += re.escape(route[pos : match.start()]) + f"(?P<{match[1]}>[^/]+)"
        pos = match.end()
    return out + re.escape(route[pos:])


def _routes(functions: Iterable[Any]) -> list[_Route]:
    routes = []
    for function in functions:
        trigger = next((b for b in function.get_bindings() if b.type == "httpTrigger"), None)
        if trigger is None:
            continue
        template = _pattern(trigger.route)
        durable = next((b.name for b in function.get_bindings() if b.type == "durableClient"), None)
        methods = frozenset(str(getattr(m, "value", m)).upper() for m in (trigger.methods or ()))
        routes.append(
            _Route(
                function.get_function_name(),
                re.compile(f"^/api/{template}$"),
                methods,
                function.get_user_function(),
                durable,
            )
        )
    return routes


@functools.cache
def app_functions() -> tuple[Any, ...]:
    """The real function app's functions with their bindings, indexed once per process as the host does
    (`get_functions()` refuses a second call): the demo, devstack/installed.py and the tests share them."""
    import function_app

    return tuple(function_app.app.get_functions())


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def run_on_host_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """One long-lived loop for async functions, as the Python worker keeps one (the Durable SDK's shared
    HTTP session belongs to the loop that made it)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="functions-host-loop", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coroutine, _loop).result(120)


class LocalFunctionsHost(LoopbackServer):
    """The function app's HTTP triggers on a free 127.0.0.1 port (see the module docstring)."""

    name = "local Functions host"

    def __init__(
        self,
        functions: Iterable[Any],
        *,
        durable_binding: str | None = None,
        run_async: Callable[[Coroutine[Any, Any, Any]], Any] = run_on_host_loop,
    ) -> None:
        super().__init__()
        self._routes = _routes(functions)
        self._durable_binding = durable_binding
        self._run_async = run_async
        self._sessions: dict[str, SignedInUser] = {}
        self._lock = threading.Lock()
        self.sign_in_as: SignedInUser | None = None  # who the next visit to the login endpoint signs in
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_to(self, path_contains: str, method: str | None = None) -> list[tuple[str, str, int]]:
        with self._lock:
            return [r for r in self.requests if path_contains in r[1] and (method is None or r[0] == method)]

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, MAX_BODY)) if length else b""
                headers = [(k, v) for k, v in self.headers.items()]
                status, out_headers, payload = owner.serve(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in out_headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload and self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def serve(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(target)
        answer = self._serve(method, parts.path, parts.query, headers, body)
        with self._lock:
            self.requests.append((method, parts.path, answer[0]))
        return answer

    def _serve(
        self, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if path == "/.auth/login/aad":
            return self._login(parse_qs(query))
        # App Service authentication removes any principal header a client sends, then adds its own.
        forwarded = {k: v for k, v in headers if not k.lower().startswith("x-ms-client-principal")}
        user = self._session_user(forwarded)
        if user is not None:
            forwarded["X-MS-CLIENT-PRINCIPAL"] = user.client_principal()
            forwarded["X-MS-CLIENT-PRINCIPAL-ID"] = user.oid
            forwarded["X-MS-CLIENT-PRINCIPAL-IDP"] = "aad"
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if method.upper() not in route.methods:
                continue
            return self._call(route, method, path, query, forwarded, match.groupdict(), body)
        return 404, [("Content-Type", "text/plain")], b"not found"

    def _call(
        self,
        route: _Route,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        route_params: dict[str, str],
        body: bytes,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        request = func.HttpRequest(
            method.upper(),
            f"{self.url}{path}" + (f"?{query}" if query else ""),
            headers=headers,
            params=params,
            route_params={k: unquote(v) for k, v in route_params.items()},
            body=body,
        )
        kwargs: dict[str, Any] = {"req": request}
        if route.durable_parameter is not None:
            kwargs[route.durable_parameter] = self._durable_binding
        result = route.function(**kwargs)
        if inspect.iscoroutine(result):
            result = self._run_async(result)
        response: func.HttpResponse = result
        out = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")]
        if response.mimetype:
            charset = f"; charset={response.charset}" if response.charset else ""
            out.append(("Content-Type", f"{response.mimetype}{charset}"))
        return response.status_code, out, response.get_body() or b""

    def _login(self, query: dict[str, list[str]]) -> tuple[int, list[tuple[str, str]], bytes]:
        target = (query.get("post_login_redirect_uri") or ["/"])[-1]
        if not target.startswith("/") or target.startswith("//"):  # App Service allows only relative paths here
            return 400, [("Content-Type", "text/plain")], b"post_login_redirect_uri must be a relative path"
        if self.sign_in_as is None:
            return 401, [("Content-Type", "text/plain")], b"nobody to sign in"
        session = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[session] = self.sign_in_as
        cookie = f"{SESSION_COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=None"  # as App Service sets it
        return 302, [("Location", target), ("Set-Cookie", cookie)], b""

    def _session_user(self, headers: dict[str, str]) -> SignedInUser | None:
        cookies = next((v for k, v in headers.items() if k.lower() == "cookie"), "")
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                with self._lock:
                    return self._sessions.get(value)
        return None
