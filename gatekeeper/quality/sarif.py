"""Count the findings of a SARIF 2.1.0 log by level and by security severity.

Counting rules (SARIF 2.1.0 and GitHub code scanning conventions):
- only results of kind `fail` count (kind defaults to `fail`); `pass`, `review`, ... do not;
- suppressed results (a suppression whose status is absent or `accepted`) and results whose
  `baselineState` is `absent` (already fixed) do not count;
- a result's level is its own `level`, else its rule's `defaultConfiguration.level`, else `warning`;
- security severity is `properties.security-severity` (a CVSS-like 0.0-10.0 score, a string or a
  number) on the result, else on its rule; critical >= 9.0, high >= 7.0, medium >= 4.0, low > 0.0
  (0.0 is "none", as in CVSS). Results without one are counted by level only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

LEVELS = ("error", "warning", "note", "none")
SEVERITIES = ("critical", "high", "medium", "low")


class SarifError(ValueError):
    """A SARIF log that is not shaped like SARIF 2.1.0; `field` is the JSON path of the problem."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class SarifSummary(BaseModel):
    """Counts of the counted results of one SARIF log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error: int = 0
    warning: int = 0
    note: int = 0
    none: int = 0
    critical: int = 0
    high: int = 0
    medium: int = 0
    low: int = 0
    results: int = 0  # all counted results


def severity_bucket(score: float) -> str | None:
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0.0:
        return "low"
    return None


def _security_severity(properties: Any, where: str) -> float | None:
    if not isinstance(properties, Mapping) or "security-severity" not in properties:
        return None
    raw = properties["security-severity"]
    try:
        score = float(raw)
    except (TypeError, ValueError):
        raise SarifError(f"{where}.properties.security-severity", f"{raw!r} is not a number") from None
    if not 0.0 <= score <= 10.0:
        raise SarifError(f"{where}.properties.security-severity", f"{raw!r} is outside 0.0-10.0")
    return score


def _rules_of(run: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    tool = run.get("tool")
    driver = tool.get("driver") if isinstance(tool, Mapping) else None
    rules = driver.get("rules", []) if isinstance(driver, Mapping) else []
    rules = rules if isinstance(rules, list) else []
    by_id: dict[str, Any] = {}
    extensions = tool.get("extensions", []) if isinstance(tool, Mapping) else []
    for component in [driver, *(extensions if isinstance(extensions, list) else [])]:
        if isinstance(component, Mapping):
            for rule in component.get("rules", []) or []:
                if isinstance(rule, Mapping) and isinstance(rule.get("id"), str):
                    by_id.setdefault(rule["id"], rule)
    return rules, by_id


def _rule_for(result: Mapping[str, Any], rules: list[Any], by_id: dict[str, Any]) -> Mapping[str, Any] | None:
    index = result.get("ruleIndex")
    reference = result.get("rule")
    if index is None and isinstance(reference, Mapping) and "toolComponent" not in reference:
        index = reference.get("index")
    if isinstance(index, int) and 0 <= index < len(rules) and isinstance(rules[index], Mapping):
        return rules[index]
    rule_id = result.get("ruleId")
    if rule_id is None and isinstance(reference, Mapping):
        rule_id = reference.get("id")
    if isinstance(rule_id, str):
        # SARIF allows hierarchical ids ("CA2101/1"); fall back to the base id.
        return by_id.get(rule_id) or by_id.get(rule_id.split("/")[0])
    return None


def _suppressed(result: Mapping[str, Any]) -> bool:
    suppressions = result.get("suppressions")
    if not isinstance(suppressions, list):
        return False
    return any(isinstance(s, Mapping) and s.get("status", "accepted") == "accepted" for s in suppressions)


def summarize_sarif(log: Any, where: str = "sarif") -> SarifSummary:
    """Count the results of a SARIF 2.1.0 log; SarifError naming the JSON path when it is malformed."""
    if not isinstance(log, Mapping):
        raise SarifError(where, "must be a SARIF 2.1.0 log object")
    if log.get("version") != "2.1.0":
        raise SarifError(f"{where}.version", f"must be '2.1.0', got {log.get('version')!r}")
    runs = log.get("runs")
    if not isinstance(runs, list):
        raise SarifError(f"{where}.runs", "must be a list of runs")
    counts = dict.fromkeys((*LEVELS, *SEVERITIES, "results"), 0)
    for r, run in enumerate(runs):
        run_path = f"{where}.runs[{r}]"
        if not isinstance(run, Mapping):
            raise SarifError(run_path, "must be an object")
        results = run.get("results")
        results = [] if results is None else results  # null: the tool did not run to completion
        if not isinstance(results, list):
            raise SarifError(f"{run_path}.results", "must be a list")
        rules, by_id = _rules_of(run)
        for i, result in enumerate(results):
            path = f"{run_path}.results[{i}]"
            if not isinstance(result, Mapping):
                raise SarifError(path, "must be an object")
            if result.get("kind", "fail") != "fail" or _suppressed(result):
                continue
            if result.get("baselineState") == "absent":
                continue
            rule = _rule_for(result, rules, by_id)
            level = result.get("level")
            if level is None and rule is not None:
                config = rule.get("defaultConfiguration")
                level = config.get("level") if isinstance(config, Mapping) else None
            level = level or "warning"
            if level not in LEVELS:
                raise SarifError(f"{path}.level", f"{level!r} is not one of {', '.join(LEVELS)}")
            counts[level] += 1
            counts["results"] += 1
            score = _security_severity(result.get("properties"), path)
            if score is None and rule is not None:
                score = _security_severity(rule.get("properties"), f"{run_path}.tool.driver.rules[{rule.get('id')}]")
            bucket = severity_bucket(score) if score is not None else None
            if bucket:
                counts[bucket] += 1
    return SarifSummary(**counts)
