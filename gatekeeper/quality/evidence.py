"""Quality evidence attached to a gate request: tests, coverage, SARIF findings and SLO indicators.

Evidence is reduced to numbers at the edge (a SARIF log becomes counts), so the scoring code and the
orchestration history only ever see small, typed values.

Indicator names that quality objectives refer to (`sli:` in the policy):
- `tests.passed`, `tests.failed`, `tests.skipped`, `tests.total`, `tests.pass_rate`
  (pass rate = passed / (passed + failed) * 100; skipped tests are left out; none when nothing ran);
- `coverage.line_percent`, `coverage.branch_percent`;
- `sarif.error`, `sarif.warning`, `sarif.note`, `sarif.critical`, `sarif.high`, `sarif.medium`,
  `sarif.low`, `sarif.results` (see gatekeeper.quality.sarif for what counts);
- `slo.<name>` for each SLO indicator, with its optional baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gatekeeper.quality.paths import pydantic_issues
from gatekeeper.quality.sarif import SarifError, SarifSummary, summarize_sarif

INDICATOR_KINDS = ("tests", "coverage", "sarif", "slo")
TEST_INDICATORS = ("passed", "failed", "skipped", "total", "pass_rate")
COVERAGE_INDICATORS = ("line_percent", "branch_percent")
SARIF_INDICATORS = ("error", "warning", "note", "critical", "high", "medium", "low", "results")
SLO_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


class EvidenceError(ValueError):
    """Evidence that cannot be used; `field` names where in the evidence document the problem is."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class TestResults(BaseModel):
    __test__ = False  # not a pytest test class

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    passed: int = Field(ge=0)
    failed: int = Field(ge=0)
    skipped: int = Field(default=0, ge=0)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    @property
    def pass_rate(self) -> float | None:
        ran = self.passed + self.failed
        return self.passed / ran * 100.0 if ran else None


class Coverage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    line_percent: float = Field(ge=0, le=100)
    branch_percent: float | None = Field(default=None, ge=0, le=100)


class SloIndicator(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    name: str = Field(pattern=SLO_NAME_PATTERN)
    value: float
    baseline: float | None = None
    unit: str | None = None


class QualityEvidence(BaseModel):
    """Everything quality objectives can be evaluated against. `sarif` accepts a raw SARIF 2.1.0 log."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    tests: TestResults | None = None
    coverage: Coverage | None = None
    sarif: SarifSummary | None = None
    slo: tuple[SloIndicator, ...] = ()

    @field_validator("sarif", mode="before")
    @classmethod
    def _summarize_raw_sarif(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and ("runs" in value or "version" in value):
            try:
                return summarize_sarif(value, where="")
            except SarifError as exc:
                raise ValueError(f"@{exc.field.lstrip('.')}: {exc.detail}") from None
        return value

    @field_validator("slo")
    @classmethod
    def _unique_slo_names(cls, value: tuple[SloIndicator, ...]) -> tuple[SloIndicator, ...]:
        seen: dict[str, int] = {}
        for index, item in enumerate(value):
            if item.name in seen:
                first = seen[item.name]
                raise ValueError(f"@[{index}].name: duplicate SLO indicator {item.name!r} (also at [{first}])")
            seen[item.name] = index
        return value

    @property
    def is_empty(self) -> bool:
        return self.tests is None and self.coverage is None and self.sarif is None and not self.slo

    def indicator(self, sli: str) -> tuple[float | None, float | None]:
        """(value, baseline) of an indicator such as `coverage.line_percent`; (None, None) when absent."""
        kind, _, name = sli.partition(".")
        if kind == "tests" and self.tests is not None and name in TEST_INDICATORS:
            return getattr(self.tests, name), None
        if kind == "coverage" and self.coverage is not None and name in COVERAGE_INDICATORS:
            return getattr(self.coverage, name), None
        if kind == "sarif" and self.sarif is not None and name in SARIF_INDICATORS:
            return float(getattr(self.sarif, name)), None
        if kind == "slo":
            for item in self.slo:
                if item.name == name:
                    return item.value, item.baseline
        return None, None

    @classmethod
    def from_mapping(cls, data: Any, where: str = "") -> QualityEvidence:
        """Validate an evidence document; EvidenceError naming the field otherwise."""
        if not isinstance(data, Mapping):
            raise EvidenceError(where or "(document)", "evidence must be a JSON object with tests/coverage/sarif/slo")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            path, message = pydantic_issues(exc, where)[0]
            raise EvidenceError(path, message) from None

    @classmethod
    def from_refs(cls, refs: Iterable[Any]) -> QualityEvidence | None:
        """Evidence from a PipelineEvent's inline EvidenceRefs (kind + data); refs by URI are skipped,
        because fetching them is I/O that belongs to an activity, not to this pure model."""
        document: dict[str, Any] = {}
        for index, ref in enumerate(refs):
            if ref.data is None:
                continue
            if ref.kind == "slo":
                items = ref.data.get("indicators", ref.data.get("slo", []))
                document.setdefault("slo", []).extend(items if isinstance(items, list) else [])
            elif ref.kind in document:
                raise EvidenceError(f"evidence[{index}]", f"a second {ref.kind!r} evidence item")
            else:
                document[ref.kind] = ref.data
        return cls.from_mapping(document, "evidence") if document else None


def load_evidence(path: str | Path) -> QualityEvidence:
    """Read an evidence JSON file. `sarif` may be inline or a path relative to the evidence file."""
    file = Path(path)
    from gatekeeper import json_bounded

    try:
        data = json_bounded.loads(file.read_bytes())
    except OSError as exc:
        raise EvidenceError("(file)", f"cannot be read: {exc.strerror}") from None
    except json_bounded.JsonBoundsError as exc:
        raise EvidenceError("(file)", f"is {json_bounded.verdict(exc)}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("sarif"), str):
        sarif_file = (file.parent / data["sarif"]).resolve()
        try:
            data["sarif"] = json_bounded.loads(sarif_file.read_bytes())
        except OSError as exc:
            raise EvidenceError("sarif", f"{data['sarif']!r} cannot be read: {exc.strerror}") from None
        except json_bounded.JsonBoundsError as exc:
            raise EvidenceError("sarif", f"{data['sarif']!r} is {json_bounded.verdict(exc)}: {exc}") from None
    return QualityEvidence.from_mapping(data)
