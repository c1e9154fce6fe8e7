"""Opened (decrypted) views of entries, for the JSONL and OSCAL exports.

Opened data goes to a tenant's own auditors, so comments and payload fragments stay; anything that looks
like a credential is replaced as defence in depth (callers should never record one in the first place).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gatekeeper.audit.records import ENTRY_FIELDS

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|authorization|credential|signature|api[_-]?key|cookie|private[_-]?key)",
    re.I,
)


def redact(value: Any) -> Any:
    """A copy of `value` with every entry under a credential-like key replaced by "[redacted]"."""
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def opened_entry(entry: Mapping[str, Any], data: Mapping[str, Any] | None) -> dict[str, Any]:
    """One line of the JSONL export: the entry's fields, its opened data (or a note that it cannot be
    opened any more, e.g. after the tenant's key was destroyed) and its hashes."""
    view = {k: entry.get(k) for k in ENTRY_FIELDS[: ENTRY_FIELDS.index("data")]}  # seq .. subject
    if data is None:
        view["data"] = None
        view["data_unreadable"] = True
    else:
        view["data"] = redact(data)
    view["prev_hash"] = entry.get("prev_hash")
    view["entry_hash"] = entry.get("entry_hash")
    return view
