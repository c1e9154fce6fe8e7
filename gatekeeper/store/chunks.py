"""Long strings across several table properties.

A table property holds at most 64 KiB (32K UTF-16 characters) while an entity holds 1 MiB, so a sealed
event that grew past one property (inline evidence, Azure DevOps' job token) is stored as `name`,
`name_1`, `name_2`, ... and joined on reading. Short values keep the one property they always had.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROPERTY_CHARS = 32_000  # under the 32K-character limit of one string property
MAX_CHUNKS = 15  # 15 x 64 KB stays inside the 1 MiB entity with room for the other properties


class ValueTooLarge(ValueError):
    """The value does not fit in one entity; callers bound their input below `max_chars()` first."""


def max_chars() -> int:
    return PROPERTY_CHARS * MAX_CHUNKS


def split_property(name: str, value: str) -> dict[str, str]:
    if len(value) > max_chars():
        raise ValueTooLarge(f"{name}: {len(value)} characters exceed the {max_chars()} an entity can hold")
    parts = [value[i : i + PROPERTY_CHARS] for i in range(0, len(value), PROPERTY_CHARS)] or [""]
    return {(name if index == 0 else f"{name}_{index}"): part for index, part in enumerate(parts)}


def join_property(entity: Mapping[str, Any], name: str) -> str:
    parts = [str(entity[name])]
    index = 1
    while f"{name}_{index}" in entity:
        parts.append(str(entity[f"{name}_{index}"]))
        index += 1
    return "".join(parts)
