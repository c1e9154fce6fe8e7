"""The approval page's two requests, free of azure.functions: show the gate, take a form post.

    GET  /api/approvals/{instance_id}/page   -> 200 text/html (forms when the viewer may decide now)
    POST /api/approvals/{instance_id}/page   -> 303 back to the page (Post/Redirect/Get), or the page with
                                                the refusal's reason

The viewer arrives authenticated as a `Principal` (the trigger identified them). Both requests go through
the same `DecisionService` as the API and the Teams card, so the page adds no rule of its own about who may
decide; what it adds is the browser's share: CSRF defences (`page_guard`) and escaping (`page`).
The trigger turns a `PageAnswer` into an HTTP response, and a refusal's kind into its status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from gatekeeper.errors import DependencyUnavailable, GatekeeperError
from gatekeeper.gates.decisions import DecisionService
from gatekeeper.gates.page import page_path, render_page
from gatekeeper.gates.page_guard import (
    FormGuard,
    check_same_origin,
    cookie_value,
    decision_body,
    header,
    new_cookie_value,
    origin_of,
    parse_form,
    set_cookie,
)
from gatekeeper.security.principal import Principal


@dataclass(frozen=True)
class PageAnswer:
    """What the trigger sends: a page (200, or the refusal's status with the reason shown on it) or a 303."""

    html: str | None = None
    redirect: str | None = None
    set_cookie: str | None = None
    refusal: GatekeeperError | None = None


class ApprovalPage:
    def __init__(
        self,
        decisions: DecisionService,
        guard: FormGuard,
        *,
        app_url: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._decisions = decisions
        self._guard = guard
        self._origin = origin_of(app_url) if app_url else None
        self._clock = clock

    def get(self, instance_id: str, principal: Principal, headers: Mapping[str, str]) -> PageAnswer:
        """The page for `principal` (401/403/404 as the API). A browser without the page cookie gets one."""
        cookie = cookie_value(headers)
        fresh = None
        if cookie is None:
            cookie = fresh = new_cookie_value()
        html = self._render(instance_id, principal, cookie)
        return PageAnswer(html=html, set_cookie=set_cookie(fresh) if fresh else None)

    def post(self, instance_id: str, principal: Principal, headers: Mapping[str, str], body: bytes) -> PageAnswer:
        """A decision from the page's form. Order: the browser's origin (403), the form's bounds (413/415/422),
        who may see the gate (401/403/404), cookie and token (403), the fields (422), then the decision service.
        Every refusal before the decision service records nothing."""
        check_same_origin(headers, self._origin)
        form = parse_form(body, header(headers, "content-type"))
        view = self._decisions.view(instance_id, principal)
        cookie = cookie_value(headers)
        self._guard.check(view.tenant_id, instance_id, principal.oid, cookie, form.token)
        assert cookie is not None  # check() refuses a missing cookie
        try:
            decision, comment = decision_body(form)
            document = json.dumps({"decision": decision, "comment": comment}).encode()
            self._decisions.decide(instance_id, principal, document)
        except DependencyUnavailable:
            raise  # "not now": the error page says when to try again
        except GatekeeperError as refusal:
            return PageAnswer(
                html=self._render(instance_id, principal, cookie, notice=(refusal.title, refusal.detail)),
                refusal=refusal,
            )
        return PageAnswer(redirect=page_path(instance_id))

    def _render(
        self, instance_id: str, principal: Principal, cookie: str, notice: tuple[str, str] | None = None
    ) -> str:
        view = self._decisions.view(instance_id, principal)
        token = self._guard.issue(view.tenant_id, instance_id, principal.oid, cookie) if view.can_decide else None
        return render_page(view, now=self._clock(), form_token=token, viewer_oid=principal.oid, notice=notice)
