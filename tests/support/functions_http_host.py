"""Serves the real registered HTTP functions over loopback, as `func start` does, so clients that speak HTTP
(the Python client, `python -m gatekeeper request`, the GitHub Action's script, the Azure Pipelines step)
can be tested end to end against the product's own routes.

Each request becomes an `azure.functions.HttpRequest` (method, URL, headers, query, route parameters, body)
handed to the function registered under the route's name; an async function (one with a durable client
binding) is awaited on the worker loop with the local Durable HTTP API's client binding, as the host does.
Only the routes in `ROUTES` are served; anything else is 404.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import azure.functions as func

from devstack.server import LocalServer, Response
from tests.support.gatekeeper_env import http_function
from tests.support.worker_loop import run_on_worker

# (method, path pattern, registered function name, takes the durable client binding)
ROUTES: tuple[tuple[str, re.Pattern[str], str, bool], ...] = (
    ("POST", re.compile(r"^/api/actions$"), "action_request", False),
    ("GET", re.compile(r"^/api/actions/(?P<action_id>[^/]+)$"), "action_status", True),
    ("POST", re.compile(r"^/api/actions/(?P<action_id>[^/]+)/cancel$"), "action_cancel", True),
    ("POST", re.compile(r"^/api/actions/(?P<action_id>[^/]+)/report$"), "action_report", False),
)


class FunctionsHttpHost(LocalServer):
    name = "functions http host"

    def __init__(self, durable_client_binding: str) -> None:
        super().__init__()
        self._binding = durable_client_binding

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        for verb, pattern, name, durable in ROUTES:
            match = pattern.match(path)
            if match and verb == method:
                request = func.HttpRequest(
                    method,
                    f"{self.url}{path}",
                    headers=headers,
                    params={key: values[-1] for key, values in query.items()},
                    route_params=match.groupdict(),
                    body=body,
                )
                function = http_function(name)
                answer: Any = function(req=request, client=self._binding) if durable else function(request)
                if inspect.iscoroutine(answer):
                    answer = run_on_worker(answer, timeout=90)
                return _response(answer)
        return 404, {"Content-Type": "application/json"}, b'{"message": "no such route"}'


def _response(response: func.HttpResponse) -> Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    headers["Content-Type"] = response.mimetype or "application/octet-stream"
    return response.status_code, headers, response.get_body()
