"""Pieces every source parser shares: the `Ignored` outcome, strict payload models and error translation,
and the rules for URLs a document names (links shown to approvers; URLs Gatekeeper calls later).

Parsers validate only the fields they use. A payload that is well-formed but not for us becomes `Ignored`
(the edge answers 202 with the reason); a payload missing a field we need raises `InvalidInput` whose
detail names the field by its JSON path. Pydantic's own errors echo input values, so they are translated
here and never chained: a secret in a bad payload must not reach a log through an exception.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from gatekeeper.addresses import is_local_host
from gatekeeper.errors import InvalidInput
from gatekeeper.events.model import ActionKind, PipelineEvent


@dataclasses.dataclass(frozen=True)
class Ignored:
    """A well-formed event we deliberately do not act on; answered 202 with `reason`."""

    reason: str


ParseResult = PipelineEvent | Ignored


class Payload(BaseModel):
    """Base for models of third-party payloads: only the fields we use, strict types, extras ignored.

    Strict so that `true` is not an id and `"12"` is not a number: a vendor sending the wrong type is a
    bug we want named, not silently coerced. Validators are built on first use (`defer_build`): a cold
    instance answering one source's route should not build every other source's payload schemas first.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, defer_build=True)


M = TypeVar("M", bound=BaseModel)

_PYDANTIC_TAG = re.compile(r"\[|^(str|int|float|bool|dict|list|none)$")


def json_path(loc: Sequence[str | int], root: str = "") -> str:
    """Render a pydantic error location as a JSON path: `deployment.creator.login`, `labels[2]`."""
    path = root
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
            continue
        if _PYDANTIC_TAG.search(str(item)):  # union member / validator tags are not payload keys
            continue
        key = shown(item)  # an unknown key is sender-chosen text: keep it printable and short
        path = f"{path}.{key}" if path else key
    return path or "$"


def _describe(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not allowed"
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = re.sub(r"^Input should", "should", message)
    return message[:1].lower() + message[1:]


def validation_problem(exc: ValidationError, *, context: str, root: str = "") -> InvalidInput:
    """Turn a pydantic error into a 422 problem naming the first bad field (all of them under `errors`)."""
    errors = [
        {"field": json_path(err["loc"], root), "detail": _describe(err)}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidInput(
        f"{context}: field '{first['field']}' {first['detail']}{more}", field=first["field"], errors=errors
    )


def problem(context: str, field: str, detail: str) -> InvalidInput:
    """A hand-made validation problem in the same shape as the translated pydantic ones."""
    return InvalidInput(
        f"{context}: field '{field}' {detail}", field=field, errors=[{"field": field, "detail": detail}]
    )


def validate(model: type[M], data: Any, *, context: str, root: str = "") -> M:
    """Validate `data` against `model`, raising `InvalidInput` (never a chained pydantic error)."""
    if not isinstance(data, Mapping):
        where = f"field '{root}'" if root else "the payload"
        raise InvalidInput(f"{context}: {where} must be a JSON object", field=root or "$")
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise validation_problem(exc, context=context, root=root) from None


def parse_json_string(value: str, *, context: str, field: str) -> dict[str, Any]:
    """Decode a JSON object carried as a string inside a payload (ConnectWise's `Entity`)."""
    from gatekeeper import json_bounded

    try:
        decoded = json_bounded.loads(value)
    except json_bounded.JsonBoundsError as exc:
        raise problem(context, field, f"is {json_bounded.verdict(exc)} ({exc.message})") from None
    if not isinstance(decoded, dict):
        raise problem(context, field, "must hold a JSON object")
    return decoded


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup (HTTP header names are case-insensitive; ADO's docs mix cases)."""
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value if isinstance(value, str) else None
    return None


def ci_get(mapping: Mapping[str, Any] | None, *names: str) -> Any:
    """Case-insensitive lookup of the first present key (Autotask's `Fields` casing is not promised)."""
    if not isinstance(mapping, Mapping):
        return None
    lowered = {str(key).lower(): value for key, value in mapping.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


_STATUS_SYNONYMS = {
    "succeeded": "success",
    "successful": "success",
    "failed": "failure",
    "canceled": "cancelled",
    "partiallysucceeded": "partially_succeeded",
    "inprogress": "in_progress",
    "notstarted": "not_started",
}


def normalise_status(value: str | None) -> str | None:
    """One status vocabulary across sources: lower snake case, with ADO's words mapped to GitHub's.

    `succeeded` → `success`, `failed` → `failure`, `canceled` → `cancelled`, `inProgress` → `in_progress`.
    """
    if value is None:
        return None
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", value.strip())
    text = re.sub(r"[\s\-]+", "_", text).lower()
    if not text:
        return None
    return _STATUS_SYNONYMS.get(text.replace("_", ""), text)


_DECISION_WORDS = {
    "approved": True,
    "approve": True,
    "rejected": False,
    "reject": False,
    "declined": False,
    "denied": False,
}


_NEGATIONS = {"not", "no", "non", "never"}


def decision_from_text(*texts: str | None) -> bool | None:
    """Read an approval decision from status names such as "Change Approved" or "CAB Rejected".

    PSA status names are tenant-configured, so we look for the decision word, never a fixed name. True is
    approved, False is rejected, None is neither (the event is then ignored). A text naming both (e.g.
    "Approved - Rejected by CAB") or negating the word ("Not Approved") is ambiguous and also yields None.
    """
    for text in texts:
        if not text:
            continue
        words = set(re.findall(r"[a-z]+", text.lower()))
        if words & _NEGATIONS:
            return None
        verdicts = {_DECISION_WORDS[word] for word in words if word in _DECISION_WORDS}
        if len(verdicts) == 1:
            return verdicts.pop()
        if verdicts:
            return None
    return None


_ACTION_WORDS: tuple[tuple[str, ActionKind], ...] = (
    ("rollback", ActionKind.ROLLBACK),
    ("roll back", ActionKind.ROLLBACK),
    ("infrastructure", ActionKind.INFRASTRUCTURE_CHANGE),
    ("infra", ActionKind.INFRASTRUCTURE_CHANGE),
    ("deployment", ActionKind.DEPLOY),
    ("deploy", ActionKind.DEPLOY),
    ("release", ActionKind.DEPLOY),
)


def action_from_text(*texts: str | None) -> ActionKind | None:
    """The action a change ticket states in its type or title, if it states one."""
    for text in texts:
        if not text:
            continue
        lowered = text.lower()
        for word, action in _ACTION_WORDS:
            if re.search(rf"\b{re.escape(word)}", lowered):
                return action
    return None


_UNEXPANDED = re.compile(r"\$\([^)]*\)")


def unexpanded_variable(value: str | None) -> bool:
    """True when an Azure Pipelines macro such as `$(Environment.Name)` reached us unexpanded."""
    return bool(value and _UNEXPANDED.search(value))


def number_to_text(value: Any) -> Any:
    """Ids may arrive as JSON numbers (`"runId": 42`); keep them as text. Booleans are not numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def shown(value: Any, limit: int = 64) -> str:
    """A sender-supplied name made safe to echo in an `Ignored` reason: printable and short."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


_HEX_COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")


def https_link(value: object) -> str | None:
    """`value` when it is an https URL fit to show as a link (a host, no credentials, no spaces or control
    characters, at most 2000 characters), else None: an event never puts `javascript:` or `http:` links in
    front of an approver, and a bad link drops the link, not the gate."""
    if not isinstance(value, str) or not value or len(value) > 2000:
        return None
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme != "https" or not host or parts.username is not None or parts.password is not None:
        return None
    if not value.lower().startswith("https://") or "@" in parts.netloc:
        return None
    return value


HTTP_ONLY_LOCAL = "must use https (http is allowed only for localhost and 127.0.0.1)"


def https_or_loopback_url(value: str) -> str:
    """`value` if it is an absolute https URL, or plain http to a local server, without credentials; else
    ValueError saying which rule it breaks. For URLs a document names for Gatekeeper to call later (a
    generic event's `callbackUrl`, a watch's probe): which ones may be plain http is decided by the one
    classifier of every outbound check (gatekeeper.addresses), so a URL passes here as local exactly when
    `check_outbound_url` would let it through where loopback http is allowed. Whether the process allows
    it, and where a name leads, is checked when the call is made."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ValueError("must be an absolute https URL") from None
    if not host or parts.scheme not in ("https", "http"):
        raise ValueError("must be an absolute https URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    if parts.scheme == "http" and not is_local_host(host):
        raise ValueError(HTTP_ONLY_LOCAL)
    return value


def web_link(base: str | None, *segments: str) -> str | None:
    """`base` (an https link) with path `segments` appended, each percent-encoded; None without a base."""
    root = https_link(base)
    if root is None or not segments:
        return None
    return https_link(root.rstrip("/") + "/" + "/".join(quote(s, safe="") for s in segments))


def commit_link(repository_url: str | None, commit: str | None) -> str | None:
    """`<repository web URL>/commit/<sha>`: the same form on GitHub, GitHub Enterprise and Azure Repos."""
    if not commit or not _HEX_COMMIT.match(commit):
        return None
    return web_link(repository_url, "commit", commit)


def tag_of(ref: str | None) -> str | None:
    """The tag a `refs/tags/<tag>` ref names (a release deployed from a tag), else None."""
    if ref and ref.startswith("refs/tags/") and len(ref) > len("refs/tags/"):
        tag = ref[len("refs/tags/") :]
        return tag if len(tag) <= 100 and not any(ch.isspace() or ord(ch) < 32 for ch in tag) else None
    return None


def dedupe(items: Iterable[str]) -> list[str]:
    """Keep the first occurrence of each item, in order."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def no_items() -> list[Any]:
    """A new empty list: the default of a payload's list fields. A plain function rather than `list`, because
    pydantic reads a default factory's signature, and a builtin's comes from its text signature through
    `tokenize`, whose patterns a new instance would compile on its first request (cold start)."""
    return []
