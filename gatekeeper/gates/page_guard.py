"""What stops another site from deciding through an approver's browser: the approval page's CSRF defences.

A form post is accepted only when all of these hold, checked before anything about the vote is read:
- the browser did not say the request came from another site (`Sec-Fetch-Site` absent, `same-origin` or
  `none`) and any `Origin` it sent is the app's own (GATEKEEPER_APPROVAL_BASE_URL), or `null` from our own
  no-referrer page, which only counts with `Sec-Fetch-Site: same-origin`;
- it carries the page's `__Host-` cookie (Secure, HttpOnly, SameSite=Strict, Path=/): a cross-site post does
  not send it, and no sibling subdomain can plant one;
- the form's token opens under the tenant's envelope key for this purpose, this gate and this person
  (`EnvelopeCipher` binds tenant, "table", partition and row in the AES-GCM associated data), names the hash
  of that cookie, and has not expired.

Why the envelope sealer and not a new secret: it already binds a value to the tenant, and a dedicated purpose
name with the gate as partition and the user as row binds the rest, so there is no key to provision, rotate
or leak, and a token cannot be carried to another gate, user, tenant or browser.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from gatekeeper.errors import Forbidden, InputTooLarge, InvalidInput, UnsupportedMediaType
from gatekeeper.store.envelope import EnvelopeCipher, SealedDataUnreadable

COOKIE_NAME = "__Host-gk-approval"
PURPOSE = "ApprovalPageForm"  # the sealing "table": form tokens open only as form tokens
FORM_TOKEN_LIFETIME = timedelta(hours=1)
MAX_FORM_BYTES = 8 * 1024
MAX_TOKEN_CHARS = 2048
FORM_FIELDS = frozenset({"token", "decision", "comment"})
MAX_COMMENT_CHARS = 1000
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 random bytes, base64url


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by case-insensitive name."""
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def new_cookie_value() -> str:
    return secrets.token_urlsafe(32)


def set_cookie(value: str) -> str:
    """The `Set-Cookie` value: host-only (`__Host-`), never sent cross-site, unreadable by script."""
    return f"{COOKIE_NAME}={value}; Path=/; Secure; HttpOnly; SameSite=Strict"


def cookie_value(headers: Mapping[str, str]) -> str | None:
    """The page cookie the browser sent, or None when absent, malformed or sent more than once."""
    found = [
        value.strip()
        for name, _, value in (part.partition("=") for part in (header(headers, "cookie") or "")[:8192].split(";"))
        if name.strip() == COOKIE_NAME
    ]
    if len(found) != 1 or not _COOKIE_VALUE.match(found[0]):
        return None
    return found[0]


def _cookie_hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` in lower case, the default port left out; None for anything that is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    default = {"https": 443, "http": 80}[parts.scheme]
    return f"{parts.scheme}://{parts.hostname.lower()}" + (f":{port}" if port and port != default else "")


def cross_site() -> Forbidden:
    return Forbidden(
        "The form was posted from another site; decide on the approval page itself.",
        code="cross-site-request",
        title="Cross-site form posts are refused",
    )


def check_same_origin(headers: Mapping[str, str], app_origin: str | None) -> None:
    """Refuse a post the browser says came from elsewhere: `Sec-Fetch-Site` other than `same-origin` or
    `none` (typed, bookmarked), or an `Origin` other than the app's. `Origin: null` is what Chromium sends
    for a form post from a page with `Referrer-Policy: no-referrer` (ours): it passes only together with
    `Sec-Fetch-Site: same-origin`, never on its own (a sandboxed frame elsewhere sends it too)."""
    site = (header(headers, "sec-fetch-site") or "").strip().lower() or None
    if site is not None and site not in ("same-origin", "none"):
        raise cross_site()
    origin = header(headers, "origin")
    if origin is None:
        return
    if origin.strip().lower() == "null":
        if site != "same-origin":
            raise cross_site()
        return
    if app_origin is None or origin_of(origin) != app_origin:
        raise cross_site()


def _invalid_form() -> Forbidden:
    return Forbidden(
        "This form was not issued to you, for this gate, in this browser; reload the page and decide again.",
        code="form-token-invalid",
        title="The form could not be verified",
    )


class FormGuard:
    """Issues and checks the approval page's form tokens (see the module docstring)."""

    def __init__(
        self,
        sealer: EnvelopeCipher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lifetime: timedelta = FORM_TOKEN_LIFETIME,
    ) -> None:
        self._sealer = sealer
        self._clock = clock
        self._lifetime = lifetime

    def issue(self, tenant_id: str, instance_id: str, oid: str, cookie: str) -> str:
        expires = int((self._clock() + self._lifetime).timestamp())
        claims = {"g": instance_id, "u": oid.lower(), "c": _cookie_hash(cookie), "exp": expires}
        return self._sealer.seal_json(tenant_id, PURPOSE, instance_id, oid.lower(), claims)

    def check(self, tenant_id: str, instance_id: str, oid: str, cookie: str | None, token: str | None) -> None:
        """Nothing when the token was issued for this tenant, gate, person and cookie and is in time; else 403
        (a key service that cannot answer propagates as the outage it is)."""
        if cookie is None:
            raise Forbidden(
                "Your browser did not send the approval page's cookie with the form; reload the page and decide "
                "again (cookies must be allowed for this site).",
                code="form-cookie-missing",
                title="The form could not be verified",
            )
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise _invalid_form()
        try:
            claims = self._sealer.open_json(tenant_id, PURPOSE, instance_id, oid.lower(), token)
        except SealedDataUnreadable:  # forged, tampered, or sealed for another gate, person or tenant
            raise _invalid_form() from None
        if not isinstance(claims, dict):
            raise _invalid_form()
        expected = {"g": instance_id, "u": oid.lower(), "c": _cookie_hash(cookie)}
        for key, value in expected.items():
            got = claims.get(key)
            if not isinstance(got, str) or not hmac.compare_digest(got.encode(), value.encode()):
                raise _invalid_form()
        expires = claims.get("exp")
        if not isinstance(expires, int) or isinstance(expires, bool) or expires <= self._clock().timestamp():
            raise Forbidden(
                "The form has expired; reload the page and decide again.",
                code="form-expired",
                title="The form has expired",
            )


@dataclass(frozen=True)
class PageForm:
    """The fields of the page's form post, bounded, each at most once."""

    token: str | None
    decision: str | None
    comment: str


def parse_form(body: bytes, content_type: str | None) -> PageForm:
    """`application/x-www-form-urlencoded`, at most MAX_FORM_BYTES, UTF-8, only the page's fields, each once."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(
            "The approval page takes application/x-www-form-urlencoded form posts.",
            code="unsupported-media-type",
            title="Unsupported media type",
        )
    if len(body) > MAX_FORM_BYTES:
        raise InputTooLarge(f"At most {MAX_FORM_BYTES} bytes.", code="body-too-large", title="The body is too large")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            max_num_fields=len(FORM_FIELDS),
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("the form must be URL-encoded UTF-8 with the page's fields", field="body") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name not in FORM_FIELDS:
            raise InvalidInput(f"{name[:40]}: not a field of the approval form", field=name[:40])
        if name in fields:
            raise InvalidInput(f"{name}: given more than once", field=name)
        fields[name] = value
    return PageForm(token=fields.get("token"), decision=fields.get("decision"), comment=fields.get("comment", ""))


def decision_body(form: PageForm) -> tuple[str, str]:
    """(decision, comment) as the decision API takes them; a rejection must say why (422 `comment`)."""
    decision = (form.decision or "").strip().lower()
    if decision not in ("approve", "reject"):
        raise InvalidInput("decision: must be 'approve' or 'reject'", field="decision")
    comment = form.comment.replace("\r\n", "\n").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"comment: at most {MAX_COMMENT_CHARS} characters", field="comment")
    if decision == "reject" and not comment:
        raise InvalidInput("comment: say why you reject, so the requester can act on it", field="comment")
    return decision, comment
