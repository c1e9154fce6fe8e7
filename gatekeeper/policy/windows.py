"""Change windows: freeze periods and business hours in a named time zone.

Business hours are evaluated in the policy's IANA time zone with `zoneinfo`, so "08:00-18:00
Europe/Amsterdam" means 07:00-17:00 UTC in winter and 06:00-16:00 UTC in summer; a fixed UTC offset
would be wrong for half the year. Freeze periods are absolute instants (ISO 8601 with an offset).
A window only concerns events inside its scope (`environments` globs, `actions`); no scope = all events.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from gatekeeper.events.model import ActionKind
from gatekeeper.policy.globs import GlobSet

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WORKDAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri")
WindowLevel = Literal["L1", "L2", "L3", "block"]
_CLOCK = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")


class _Scoped(BaseModel):
    """Optional scope shared by freezes and business hours."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environments: list[str] | None = Field(default=None, min_length=1)
    actions: list[ActionKind] | None = Field(default=None, min_length=1)

    _environments: GlobSet | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        if self.environments:
            self._environments = GlobSet(tuple(self.environments), case_sensitive=False)

    def applies_to(self, environment: str | None, action: ActionKind | None) -> bool:
        if self._environments is not None and not self._environments.matches(environment):
            return False
        return not (self.actions is not None and action not in self.actions)


class FreezePeriod(_Scoped):
    """No (automated) changes between start and end: the level is raised to `level`, or blocked."""

    name: str = Field(min_length=1, max_length=100)
    start: AwareDatetime
    end: AwareDatetime
    level: WindowLevel = "L3"
    reason: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> FreezePeriod:
        if self.end <= self.start:
            raise ValueError("@end: must be after start")
        return self

    def active_at(self, at: datetime) -> bool:
        return self.start <= at < self.end


class BusinessHours(_Scoped):
    """Working hours on working days in one time zone; outside them the level is raised."""

    timezone: str
    days: list[Day] = Field(default_factory=lambda: list(WORKDAYS), min_length=1)
    start: str = "08:00"
    end: str = "18:00"
    outside_level: WindowLevel = "L2"

    _zone: ZoneInfo | None = PrivateAttr(default=None)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Amsterdam'") from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not isinstance(value, str) or not _CLOCK.match(value):
            raise ValueError("must be a 24-hour time 'HH:MM' (quote it in YAML)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> BusinessHours:
        if self.start == self.end:
            raise ValueError("@end: must differ from start")
        return self

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._zone = ZoneInfo(self.timezone)

    @staticmethod
    def _time(text: str) -> time:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))

    def contains(self, at: datetime) -> bool:
        """Whether the instant `at` falls within business hours, read on the local wall clock.

        When end is before start (e.g. 22:00-06:00) the hours run past midnight and belong to the day
        they start on.
        """
        local = at.astimezone(self._zone)
        now, start, end = local.time(), self._time(self.start), self._time(self.end)
        today = DAYS[local.weekday()]
        if start < end:
            return today in self.days and start <= now < end
        yesterday = DAYS[(local - timedelta(days=1)).weekday()]
        return (today in self.days and now >= start) or (yesterday in self.days and now < end)

    def describe(self) -> str:
        days = ",".join(d.capitalize() for d in self.days)
        return f"{days} {self.start}-{self.end} {self.timezone}"


class ChangeWindows(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    freezes: list[FreezePeriod] = Field(default_factory=list)
    business_hours: BusinessHours | None = None

    @field_validator("freezes")
    @classmethod
    def _unique(cls, value: list[FreezePeriod]) -> list[FreezePeriod]:
        seen: dict[str, int] = {}
        for index, freeze in enumerate(value):
            if freeze.name in seen:
                first = seen[freeze.name]
                raise ValueError(f"@[{index}].name: duplicate freeze name {freeze.name!r} (also at [{first}])")
            seen[freeze.name] = index
        return value
