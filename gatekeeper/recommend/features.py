"""What a gate looks like to the recommendation model: a few named, categorical features.

The same function reads them at evaluation time (from the `event_received` facts and the public decision the
gate step is about to audit) and at training time (from those very audit entries), so what is learned and
what is asked about can never drift apart. Values are short, lower-case strings; a feature the event does not
carry is left out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

FEATURES = (
    "rule",
    "repository",
    "environment",
    "action",
    "source",
    "hour",
    "window",
    "quality",
    "recent_rollbacks",
)
MAX_VALUE = 120  # feature values are names (rules, repositories), never documents
ROLLBACK_LOOKBACK_DAYS = 14  # "recent incidents of the same service"


def hour_bucket(at: datetime) -> str:
    """Time of day (UTC) in four buckets: night 00-06, morning 06-12, afternoon 12-18, evening 18-24."""
    return ("night", "morning", "afternoon", "evening")[at.hour // 6]


def window_of(reasons: Any) -> str:
    """Change-window risk as the policy saw it: in a freeze, outside business hours, or neither."""
    texts = [str(r) for r in reasons] if isinstance(reasons, list | tuple) else []
    if any(t.startswith("change freeze") for t in texts):
        return "in_freeze"
    if any(t.startswith("outside business hours") for t in texts):
        return "outside_hours"
    return "normal"


def rollback_bucket(count: int) -> str:
    return "0" if count <= 0 else "1" if count == 1 else "2+"


def service_key(repository: Any, environment: Any) -> str:
    """The "service" a rollback belongs to: repository and environment (lower case)."""
    return f"{_text(repository) or ''}|{_text(environment) or ''}"


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip().lower()
    return text[:MAX_VALUE] or None


def gate_features(
    facts: Mapping[str, Any], decision: Mapping[str, Any], at: datetime, recent_rollbacks: int
) -> dict[str, str]:
    """The features of one gate from its `event_received` facts and its (non-final) `decision` data."""
    quality = decision.get("quality")
    result = quality.get("result") if isinstance(quality, Mapping) else None
    received = facts.get("received_at")
    when = at
    if isinstance(received, str):
        try:
            when = datetime.fromisoformat(received)
        except ValueError:
            when = at
    values = {
        "rule": _text(decision.get("rule")) or "(no rule)",
        "repository": _text(facts.get("repository")),
        "environment": _text(facts.get("environment") or decision.get("environment")),
        "action": _text(decision.get("action") or facts.get("action")),
        "source": _text(facts.get("source")),
        "hour": hour_bucket(when),
        "window": window_of(decision.get("reasons") or ()),
        "quality": _text(result),
        "recent_rollbacks": rollback_bucket(recent_rollbacks),
    }
    return {name: value for name, value in values.items() if value is not None}
