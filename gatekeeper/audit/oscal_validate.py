"""Validate OSCAL JSON against NIST's official JSON Schema.

The schema's patterns use Unicode property classes (`\\p{L}`, `\\p{N}`) that Python's `re` does not know, so
`pattern` is evaluated with the `regex` module; `format` is checked for date-time, uri, uri-reference, uuid
and email without extra packages.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import regex
from jsonschema import Draft7Validator, FormatChecker, ValidationError, validators


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_formats = FormatChecker()


@_formats.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value or not (value.endswith("Z") or value[-6] in "+-"):
        raise ValueError("not an RFC 3339 date-time with a time zone")
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@_formats.checks("uuid", raises=ValueError)
def _uuid(value: object) -> bool:
    if isinstance(value, str):
        uuid.UUID(value)
    return True


@_formats.checks("uri")
def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and " " not in value


@_formats.checks("uri-reference")
def _uri_reference(value: object) -> bool:
    return not isinstance(value, str) or (" " not in value and "\n" not in value)


@_formats.checks("email")
def _email(value: object) -> bool:
    return not isinstance(value, str) or ("@" in value and " " not in value)


OscalValidator = validators.extend(Draft7Validator, {"pattern": _pattern})


def oscal_validator(schema: Mapping[str, Any] | str | Path) -> Any:
    if not isinstance(schema, Mapping):
        schema = json.loads(Path(schema).read_text())
    return OscalValidator(schema, format_checker=_formats)


def _narrowed(schema: Mapping[str, Any], document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The complete schema's root is a oneOf over document models; validating against the one branch the
    document claims gives precise errors instead of "not valid under any of the given schemas"."""
    branches = schema.get("oneOf") or []
    for branch in branches:
        if set(branch.get("required", [])) <= set(document) and set(document) - {"$schema"} == set(
            branch.get("required", [])
        ):
            narrowed = {k: v for k, v in schema.items() if k != "oneOf"}
            narrowed.update(branch)
            return narrowed
    return schema


def validation_errors(document: Mapping[str, Any], schema: Mapping[str, Any] | str | Path) -> list[str]:
    """Every schema violation as 'path: message' (empty when the document is valid)."""
    loaded: Mapping[str, Any] = schema if isinstance(schema, Mapping) else json.loads(Path(schema).read_text())
    found = []
    for error in oscal_validator(_narrowed(loaded, document)).iter_errors(document):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(f"{where}: {error.message}")
    return found
