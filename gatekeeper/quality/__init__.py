"""Quality gates: evidence (tests, coverage, SARIF, SLOs), Keptn-style criteria and scoring."""

from gatekeeper.quality.criteria import CriteriaError, CriteriaSet, Criterion, parse_criteria, parse_criterion
from gatekeeper.quality.evidence import (
    Coverage,
    EvidenceError,
    QualityEvidence,
    SloIndicator,
    TestResults,
    load_evidence,
)
from gatekeeper.quality.policy import Objective, QualityPolicy, TotalScore
from gatekeeper.quality.result import ObjectiveResult, QualityResult
from gatekeeper.quality.sarif import SarifError, SarifSummary, summarize_sarif
from gatekeeper.quality.scoring import evaluate_objective, evaluate_quality

__all__ = [
    "Coverage",
    "CriteriaError",
    "CriteriaSet",
    "Criterion",
    "EvidenceError",
    "Objective",
    "ObjectiveResult",
    "QualityEvidence",
    "QualityPolicy",
    "QualityResult",
    "SarifError",
    "SarifSummary",
    "SloIndicator",
    "TestResults",
    "TotalScore",
    "evaluate_objective",
    "evaluate_quality",
    "load_evidence",
    "parse_criteria",
    "parse_criterion",
    "summarize_sarif",
]
