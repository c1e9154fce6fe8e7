"""Local ConnectWise PSA site for callback signing keys: what `Metadata.key_url` of a callback points at.

    GET /<codebase>/system/callbackkey/index.rails?companyName=<company>&id=...  -> {"signing_key": "<key>"}
    (404 for an unknown URL; `companies` holds other companies' keys on the same cloud site)

`sign(body_without_signature)` fills `Metadata.key_url` with this server's URL and returns the body and the
`x-content-signature` ConnectWise would send: base64(HMAC-SHA256(SHA-256(signing_key), body)). Source:
https://developer.connectwise.com/Best_Practices/PSA_Callbacks (read 2026-12-05).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from devstack.server import LocalServer, Response, json_response

KEY_PATH = "/v4_6_release/system/callbackkey/index.rails"


class ConnectWiseKeyServer(LocalServer):
    name = "local ConnectWise site"

    def __init__(self, signing_key: str) -> None:
        super().__init__()
        self.signing_key = signing_key
        # Other companies' callbacks on the same cloud site (na.myconnectwise.net serves many companies):
        # companyName -> its own signing key.
        self.companies: dict[str, str] = {}

    @property
    def site(self) -> str:
        """The host:port a tenant registers as its ConnectWise site."""
        return f"127.0.0.1:{self.port}"

    @property
    def key_url(self) -> str:
        return f"{self.url}{KEY_PATH}?companyName=fabrikammsp&id=89966c04-9889-46ad-8d5e-421103aca922"

    def key_url_of(self, company: str) -> str:
        return f"{self.url}{KEY_PATH}?companyName={company}&id=0b6c1f4e-2a7b-4d5e-9f80-1a2b3c4d5e6f"

    def sign(
        self, document: dict[str, Any], *, key_url: str | None = None, signing_key: str | None = None
    ) -> tuple[bytes, str]:
        body = json.dumps({**document, "Metadata": {"key_url": key_url or self.key_url}}).encode()
        key = hashlib.sha256((signing_key or self.signing_key).encode()).digest()
        return body, base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if method == "GET" and path == KEY_PATH and query.get("id"):
            company = (query.get("companyName") or [""])[0]
            return json_response(200, {"signing_key": self.companies.get(company, self.signing_key)})
        return json_response(404, {"code": "NotFound"})
