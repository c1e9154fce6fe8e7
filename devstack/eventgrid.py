"""Local Event Grid topic for the event mesh: the publish API for the CloudEvents 1.0 input schema, as
documented for Event Grid basic topics:

    POST {endpoint}/api/events?api-version=2018-01-01
    Content-Type: application/cloudevents-batch+json; charset=utf-8
    Authorization: Bearer <Entra token for https://eventgrid.azure.net>
    [ {"specversion": "1.0", "id": ..., "source": ..., "type": ..., ...}, ... ]

200 with an empty body when the batch is taken; 400 (`{"error": {"code": "BadRequest", ...}}`) for a wrong
content type, a body that is not a JSON array, or an event that breaks CloudEvents 1.0 (required `id`,
`source`, `specversion` "1.0", `type`; attribute names lower-case a-z0-9, at most 20 characters; `time` RFC
3339); 413 for a batch over 1 MB (the service's limit); 401 without a token for the Event Grid audience.
Over TLS: the SDK sends bearer tokens over https only (a throw-away CA, as the local Key Vault does).
`AudienceCredential` hands out a token that names the audience it was asked for, so a client asking for the
wrong scope is refused like the service refuses a token for another resource.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

from azure.core.credentials import AccessToken

from devstack.server import Response, bearer_token, empty_response, json_response
from devstack.tls import TlsLocalServer

API_VERSION = "2018-01-01"
CONTENT_TYPE = "application/cloudevents-batch+json"
AUDIENCE = "https://eventgrid.azure.net"
MAX_BATCH_BYTES = 1024 * 1024
ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
REQUIRED = ("id", "source", "specversion", "type")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class AudienceCredential:
    """A `TokenCredential` whose token names the resource it was asked for (`local:<resource>`); records
    the scopes requested. Its repr never shows a token."""

    def __init__(self) -> None:
        self.scopes_requested: list[tuple[str, ...]] = []

    def __repr__(self) -> str:
        return "AudienceCredential()"

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes_requested.append(scopes)
        resource = scopes[0].removesuffix("/.default") if scopes else ""
        return AccessToken(f"local:{resource}", int(time.time()) + 3600)


def cloud_event_problems(event: Any) -> list[str]:
    """What makes one event invalid under CloudEvents 1.0 (JSON format); empty when it is valid."""
    if not isinstance(event, dict):
        return ["an event must be a JSON object"]
    problems = [f"{name}: required" for name in REQUIRED if not isinstance(event.get(name), str) or not event[name]]
    if event.get("specversion") not in (None, "1.0"):
        problems.append("specversion: must be 1.0")
    for name in event:
        if name != "data_base64" and not ATTRIBUTE_NAME.match(name):
            problems.append(f"{name}: attribute names are lower-case a-z0-9, 1-20 characters")
    when = event.get("time")
    if when is not None and (not isinstance(when, str) or not RFC3339.match(when)):
        problems.append("time: must be an RFC 3339 timestamp")
    elif isinstance(when, str):
        try:
            datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            problems.append("time: not a valid date and time")
    return problems


class LocalEventGridServer(TlsLocalServer):
    name = "local Event Grid"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    @property
    def endpoint(self) -> str:
        """The topic endpoint as Bicep's `properties.endpoint` gives it."""
        return f"https://127.0.0.1:{self.port}/api/events"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("type") == kind]

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if method != "POST" or path.rstrip("/") != "/api/events":
            return json_response(404, {"error": {"code": "NotFound", "message": "Not found"}})
        if query.get("api-version") != [API_VERSION]:
            return _bad(f"api-version must be {API_VERSION}")
        if bearer_token(headers) != f"local:{AUDIENCE}":
            return json_response(401, {"error": {"code": "Unauthorized", "message": "The token is not valid"}})
        media = [p.strip().lower() for p in headers.get("content-type", "").split(";")]
        if media[0] != CONTENT_TYPE or (len(media) > 1 and media[1] not in ("charset=utf-8", "")):
            return _bad(f"Content-Type must be {CONTENT_TYPE}; charset=utf-8")
        if len(body) > MAX_BATCH_BYTES:
            return json_response(413, {"error": {"code": "RequestEntityTooLarge", "message": "over 1 MB"}})
        try:
            batch = json.loads(body)
        except ValueError:
            return _bad("the body is not JSON")
        if not isinstance(batch, list) or not batch:
            return _bad("a CloudEvents batch is a non-empty JSON array")
        for index, event in enumerate(batch):
            problems = cloud_event_problems(event)
            if problems:
                return _bad(f"event {index}: {'; '.join(problems)}")
        with self._lock:
            self.events.extend(batch)
        return empty_response(200)


def _bad(message: str) -> Response:
    return json_response(400, {"error": {"code": "BadRequest", "message": message}})
