"""Policy as code: gate levels L0-L3, the per-tenant policy document and its evaluation.

policy = load_policy("examples/policy.yaml")
decision = evaluate(policy, event, evidence, at)   # pure; GateDecision.to_public_json()
"""

from gatekeeper.policy.approval import ApprovalChainSpec, ApprovalStageSpec
from gatekeeper.policy.decision import ApprovalPlan, GateDecision
from gatekeeper.policy.document import PolicyDocument, PolicyError, PolicyRule, RuleMatch, load_policy, policy_schema
from gatekeeper.policy.engine import evaluate, infer_action
from gatekeeper.policy.levels import GateLevel

__all__ = [
    "ApprovalChainSpec",
    "ApprovalPlan",
    "ApprovalStageSpec",
    "GateDecision",
    "GateLevel",
    "PolicyDocument",
    "PolicyError",
    "PolicyRule",
    "RuleMatch",
    "evaluate",
    "infer_action",
    "load_policy",
    "policy_schema",
]
