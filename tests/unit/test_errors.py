"""One error hierarchy: domain code raises kinds; only functions/http.py knows HTTP statuses, and the
problem+json a route answers stays byte-identical to before the hierarchy (type URI, title, status)."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import azure.functions as func
import pytest

from functions.http import STATUS_BY_KIND, handle, problem_body, status_of
from gatekeeper import errors
from gatekeeper.cli import error_line, exit_code_of
from gatekeeper.commands.common import UsageError
from gatekeeper.errors import (
    Conflict,
    DependencyUnavailable,
    Forbidden,
    GatekeeperError,
    Gone,
    HeadersTooLarge,
    InputTooLarge,
    IntegrityError,
    InvalidInput,
    MalformedInput,
    NotFound,
    Unauthenticated,
    UnsupportedMediaType,
)

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "gatekeeper"
DEVELOPMENT = {PRODUCT / "local"}  # local fakes speak other services' HTTP, not ours

EXPECTED = {
    MalformedInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    InputTooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidInput: 422,
    HeadersTooLarge: 431,
    IntegrityError: 500,
    DependencyUnavailable: 503,
}


def _product_modules() -> list[Path]:
    return [p for p in PRODUCT.rglob("*.py") if not any(d in p.parents for d in DEVELOPMENT)]


def _kind_names() -> set[str]:
    """Every GatekeeperError subclass defined anywhere in the product (the kinds and their folds)."""
    import gatekeeper.audit.bundle
    import gatekeeper.cli
    import gatekeeper.gates.decisions
    import gatekeeper.policy.document  # noqa: F401

    found: set[str] = set()
    todo = [GatekeeperError]
    while todo:
        kind = todo.pop()
        found.add(kind.__name__)
        todo.extend(kind.__subclasses__())
    return found


def test_every_kind_has_exactly_the_status_it_had_as_a_problem():
    assert STATUS_BY_KIND == EXPECTED
    for kind, status in EXPECTED.items():
        assert status_of(kind("d")) == status, kind.__name__
    assert status_of(GatekeeperError("anything else")) == 500


def test_gatekeeper_constructs_no_http_status_for_an_error():
    """No `Problem`, no HTTP status number passed to an error kind, no `status = 4xx/5xx` on a class: what a
    kind means on the wire is decided in functions/http.py only."""
    kinds = _kind_names()
    offences: list[str] = []
    for path in _product_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "Problem":
                offences.append(f"{where}:{node.lineno}: Problem")
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name in kinds:
                    values = [*node.args, *(k.value for k in node.keywords)]
                    for value in values:
                        if isinstance(value, ast.Constant) and type(value.value) is int and 100 <= value.value < 600:
                            offences.append(f"{where}:{node.lineno}: {name}({value.value}, ...)")
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    target = stmt.target if isinstance(stmt, ast.AnnAssign) else None
                    if target is None and isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                        target = stmt.targets[0]
                    value = getattr(stmt, "value", None)
                    if (
                        isinstance(target, ast.Name)
                        and target.id == "status"
                        and isinstance(value, ast.Constant)
                        and type(value.value) is int
                        and 400 <= value.value < 600
                    ):
                        offences.append(f"{where}:{stmt.lineno}: {node.name}.status = {value.value}")
    assert offences == []


def test_the_error_module_holds_no_http_number():
    source = inspect.getsource(errors)
    numbers = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and type(n.value) is int}
    assert not {n for n in numbers if 400 <= n < 600}


@pytest.mark.parametrize(
    ("raise_it", "body", "headers"),
    [
        (
            lambda: __import__("gatekeeper.security.principal", fromlist=["x"]).wrong_tenant(),
            {
                "type": "https://gatekeeper.dev/problems/wrong-tenant",
                "title": "Wrong tenant",
                "status": 403,
                "detail": "The identity belongs to a different Microsoft Entra ID tenant than this gate.",
            },
            {},
        ),
        (
            lambda: errors.foreign_target("repository", "is not registered"),
            {
                "type": "https://gatekeeper.dev/problems/target-not-registered",
                "title": "The request names a target not registered for this tenant",
                "status": 422,
                "detail": "field 'repository' is not registered",
                "field": "repository",
            },
            {},
        ),
        (
            lambda: errors.dependency_unavailable("storage service", 7),
            {
                "type": "https://gatekeeper.dev/problems/dependency-unavailable",
                "title": "A service Gatekeeper depends on is unavailable",
                "status": 503,
                "detail": "The storage service did not answer in time; nothing was accepted. Send the request again "
                "later.",
                "dependency": "storage service",
            },
            {"Retry-After": "7"},
        ),
        (
            lambda: errors.unauthenticated(),
            {
                "type": "https://gatekeeper.dev/problems/unauthenticated",
                "title": "Authentication failed",
                "status": 401,
                "detail": "The request could not be authenticated.",
            },
            {"WWW-Authenticate": 'Bearer realm="gatekeeper"'},
        ),
        (
            lambda: errors.integrity_error(),
            {
                "type": "https://gatekeeper.dev/problems/integrity-error",
                "title": "Stored data failed its integrity check",
                "status": 500,
                "detail": "A sealed record did not open where it is stored; the failure was recorded. Contact the "
                "operators.",
            },
            {},
        ),
    ],
)
def test_a_route_answers_the_same_problem_json_as_before(raise_it, body, headers):
    request = func.HttpRequest("POST", "http://localhost/api/x?code=k", headers={}, body=b"{}")

    def action():
        raise raise_it()

    response = handle(request, action)
    assert response.status_code == body["status"] and response.mimetype == "application/problem+json"
    assert json.loads(response.get_body()) == {**body, "instance": "http://localhost/api/x"}
    for name, value in headers.items():
        assert response.headers[name] == value
    assert ("WWW-Authenticate" in response.headers) == ("WWW-Authenticate" in headers)


def test_the_problem_body_keeps_its_key_order():
    """Byte-identical answers: type, title, status, detail, instance, field, then extras."""
    error = InvalidInput("x: bad", "x", [{"field": "x", "message": "bad"}])
    assert list(problem_body(error, "/api/y")) == ["type", "title", "status", "detail", "instance", "field", "errors"]


def test_the_cli_answers_every_kind_in_one_place():
    assert exit_code_of(UsageError("a.json: field x: bad")) == 2
    assert error_line(UsageError("a.json: field x: bad")) == "gatekeeper: error: a.json: field x: bad"
    assert exit_code_of(Forbidden("no")) == 2 and exit_code_of(InvalidInput("x: bad", "x")) == 2
    assert (
        error_line(InvalidInput("x: bad", "x")) == "gatekeeper: error: The payload failed validation: x: bad (field: x)"
    )
