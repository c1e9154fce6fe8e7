"""Small, never-raising readers for untrusted tenant hints (see `gatekeeper.events.identity`), shared by
the pipeline sources and the connector modules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_MAX_LEN = 256
_SAFE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces or control characters


def clean(value: Any, *, lower: bool = True) -> str | None:
    """A usable identity component, or None for anything odd (wrong type, empty, huge, control chars)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value > 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > _MAX_LEN or not _SAFE.match(text):
        return None
    return text.lower() if lower else text


def get_path(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def envelope_body(payload: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """Connector queue messages wrap the vendor body; accept either the envelope or the bare body."""
    inner = payload.get("payload")
    if "connector" in payload and isinstance(inner, Mapping):
        return clean(payload.get("account")), inner
    return None, payload
