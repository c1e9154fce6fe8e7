"""A local stand-in for the Bot Framework's token service, for the Teams bot's tests and the demo.

It answers what `login.botframework.com` does for a bot: the OpenID metadata
(`/v1/.well-known/openidconfiguration`, issuer `https://api.botframework.com`) and its keys
(`/v1/.well-known/keys`, each with the channels it is `endorsements` for), and signs activity tokens as the
Teams service does when it posts to a bot (issuer `https://api.botframework.com`, audience the bot's app id,
a `serviceurl` claim), and as Entra ID does for a single-tenant or managed-identity bot
(`sign_entra_activity`: issuer the tenant's, keys at `/{tenant}/discovery/v2.0/keys`). It also hands the bot
its own outbound token (`POST /botframework.com/oauth2/v2.0/token`, audience `https://api.botframework.com`),
which the local Bot Connector (`devstack.bot_connector`) checks; like Entra, it issues a client-credentials
token for any one `{resource}/.default` scope (the SDK asks for the calling agent's when it answers one).
Built on the Entra stand-in's keys and lifecycle (`devstack.entra_issuer`). 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import jwt
import requests
from azure.core.credentials import AccessToken

from devstack.entra_issuer import LocalEntraIssuer, SigningKey

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_FRAMEWORK_AUDIENCE = "https://api.botframework.com"
METADATA_PATH = "/v1/.well-known/openidconfiguration"
KEYS_PATH = "/v1/.well-known/keys"
TOKEN_PATH = "/botframework.com/oauth2/v2.0/token"  # noqa: S105 - a path, not a secret
CHANNEL_SERVICE_APP_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "bot-service"))  # the caller on Entra-issued tokens


class LocalBotFrameworkIssuer(LocalEntraIssuer):
    """Bot Framework-shaped metadata, keys and tokens on a free loopback port (also the Entra paths)."""

    name = "local-botframework"

    def __init__(self, endorsements: tuple[str, ...] = ("msteams", "webchat")) -> None:
        super().__init__()
        self.endorsements = endorsements
        self.client_secrets: dict[str, str] = {}  # app id -> secret the local token endpoint accepts
        self.scopes_issued: list[str] = []  # the scope of every token the token endpoint handed out
        self._stranger = SigningKey.generate()  # a key nobody publishes, for forged tokens

    @property
    def metadata_url(self) -> str:
        return f"{self.authority_host}{METADATA_PATH}"

    @property
    def token_url(self) -> str:
        return f"{self.authority_host}{TOKEN_PATH}"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        issuer = self
        base = super().handler_class()

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                issuer._count(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode() if length else "")
                status, body = issuer._token(self.path, {k: v[0] for k, v in form.items()})
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _route(self, path: str) -> tuple[int, dict[str, Any]]:
        if path == METADATA_PATH:
            return 200, {
                "issuer": BOT_FRAMEWORK_ISSUER,
                "authorization_endpoint": f"{self.authority_host}/v1/.well-known/authorize",
                "jwks_uri": f"{self.authority_host}{KEYS_PATH}",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        if path == KEYS_PATH:
            with self._lock:
                keys = list(self._keys)
            return 200, {
                "keys": [
                    {
                        **{k: v for k, v in key.public_jwk("").items() if k != "issuer"},
                        "endorsements": list(self.endorsements),
                    }
                    for key in keys
                ]
            }
        return super()._route(path)

    # tokens ----------------------------------------------------------------------------------------------
    def sign_activity(
        self,
        app_id: str,
        service_url: str,
        *,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        issued_at: float | None = None,
        lifetime: int = 3600,
        forged: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """The token the Teams service puts on an activity it posts to the bot `app_id`. `forged` signs with
        a key the metadata does not list."""
        iat = int(time.time() if issued_at is None else issued_at)
        claims: dict[str, Any] = {
            "serviceurl": service_url,
            "nbf": iat,
            "exp": iat + lifetime,
            "iat": iat,
            "iss": issuer,
            "aud": app_id,
            **(extra or {}),
        }
        if forged:
            return jwt.encode(claims, self._stranger.private_key, algorithm="RS256", headers={"kid": self.kid})
        return self.sign(claims)

    def sign_entra_activity(
        self,
        app_id: str,
        tenant: str,
        *,
        tid: str | None = None,
        v1: bool = False,
        service_url: str | None = None,
        issued_at: float | None = None,
        lifetime: int = 3600,
        forged: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """The token Azure Bot Service puts on an activity for a single-tenant or managed-identity bot when
        Entra ID signs it: issuer `{authority}/{tenant}/v2.0` (or v1 `https://sts.windows.net/{tenant}/`),
        audience the bot's app id, `tid` the tenant (or `tid`, to test the binding), an app-only token of the
        channel service with no `serviceurl` unless `service_url` is given. Signed with the key the tenant's
        `/discovery/v2.0/keys` publishes here (`forged`: with a key nobody publishes)."""
        iat = int(time.time() if issued_at is None else issued_at)
        service = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/bot-service"))
        claims: dict[str, Any] = {
            "aud": app_id,
            "iss": f"https://sts.windows.net/{tenant}/" if v1 else self.issuer(tenant),
            "iat": iat,
            "nbf": iat,
            "exp": iat + lifetime,
            "tid": tid if tid is not None else tenant,
            "oid": service,
            "sub": service,
            ("appid" if v1 else "azp"): CHANNEL_SERVICE_APP_ID,  # the calling app: v1 / v2 claim name
            "idtyp": "app",
            "ver": "1.0" if v1 else "2.0",
            "uti": uuid.uuid4().hex[:22],
            **({"serviceurl": service_url} if service_url is not None else {}),
            **(extra or {}),
        }
        if forged:
            return jwt.encode(claims, self._stranger.private_key, algorithm="RS256", headers={"kid": self.kid})
        return self.sign(claims)

    def bot_token(self, app_id: str, lifetime: int = 3600, audience: str = BOT_FRAMEWORK_AUDIENCE) -> str:
        """The bot's own token for the Bot Connector (what Entra issues the managed identity), or for another
        `audience` (an agent the bot answers)."""
        now = int(time.time())
        return self.sign(
            {
                "aud": audience,
                "iss": f"{self.authority_host}/botframework.com/v2.0",
                "appid": app_id,
                "azp": app_id,
                "iat": now,
                "nbf": now,
                "exp": now + lifetime,
                "uti": uuid.uuid4().hex[:22],
            }
        )

    def _token(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path != TOKEN_PATH:
            return 404, {"error": "invalid_request"}
        app_id = form.get("client_id", "")
        if form.get("grant_type") != "client_credentials" or self.client_secrets.get(app_id) != form.get(
            "client_secret"
        ):
            return 401, {"error": "invalid_client", "error_description": "Unknown client or wrong secret."}
        scope = form.get("scope", "")
        resource = scope.removesuffix("/.default")
        if not resource or resource == scope or " " in scope:  # client credentials: one `{resource}/.default`
            return 400, {"error": "invalid_scope"}
        with self._lock:
            self.scopes_issued.append(scope)
        token = self.bot_token(app_id, audience=resource)
        return 200, {"token_type": "Bearer", "expires_in": 3600, "access_token": token}

    def verify_bot_token(self, token: str, app_id: str) -> bool:
        """What the Bot Connector checks of the bot's outbound token."""
        try:
            claims = jwt.decode(token, self.public_pem(), algorithms=["RS256"], audience=BOT_FRAMEWORK_AUDIENCE)
        except jwt.PyJWTError:
            return False
        return claims.get("appid") == app_id


class LocalClientCredential:
    """A `TokenCredential` that gets the bot's token from the local token endpoint by client credentials,
    as the managed identity gets it from Entra in Azure. Caches until shortly before expiry."""

    def __init__(self, token_url: str, client_id: str, secret: str) -> None:
        self._url = token_url
        self._client_id = client_id
        self._secret = secret
        self._lock = threading.Lock()
        self._cached: dict[str, AccessToken] = {}
        self.requests = 0

    def __repr__(self) -> str:
        return f"LocalClientCredential(client_id={self._client_id!r})"

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        scope = " ".join(scopes)
        with self._lock:
            cached = self._cached.get(scope)
            if cached is not None and cached.expires_on - 60 > time.time():
                return cached
            self.requests += 1
            answer = requests.post(
                self._url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._secret,
                    "scope": scope,
                },
                timeout=10,
            )
            answer.raise_for_status()
            body = answer.json()
            token = AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))
            self._cached[scope] = token
            return token


def card_action_activity(
    *,
    service_url: str,
    app_id: str,
    user_oid: str,
    tenant_id: str,
    verb: str,
    instance_id: str,
    inputs: Mapping[str, Any] | None = None,
    name: str = "Local Approver",
    trigger: str = "manual",
) -> dict[str, Any]:
    """The `adaptiveCard/action` invoke a Teams client sends (through the Bot Connector) when a person
    presses an `Action.Execute` button, or when the card refreshes itself (`trigger` "automatic")."""
    return {
        "name": "adaptiveCard/action",
        "type": "invoke",
        "id": "f:" + uuid.uuid4().hex,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": "29:" + uuid.uuid5(uuid.NAMESPACE_URL, user_oid).hex, "name": name, "aadObjectId": user_oid},
        "conversation": {"conversationType": "personal", "tenantId": tenant_id, "id": "a:" + uuid.uuid4().hex},
        "recipient": {"id": f"28:{app_id}", "name": "Gatekeeper"},
        "entities": [{"type": "clientInfo", "locale": "en-US", "platform": "Web"}],
        "channelData": {"tenant": {"id": tenant_id}, "source": {"name": "message"}},
        "replyToId": "1:" + uuid.uuid4().hex,
        "value": {
            "action": {
                "type": "Action.Execute",
                "verb": verb,
                "data": {"instance_id": instance_id, **(inputs or {})},
            },
            "trigger": trigger,
        },
        "locale": "en-US",
    }
