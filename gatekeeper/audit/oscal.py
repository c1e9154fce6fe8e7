"""NIST OSCAL 1.2.3 `assessment-results` from a verified export bundle and its opened records.

Mapping:
- every recorded step is an observation: gate decisions with `methods: ["TEST"]` and the Gatekeeper
  component as `tool` origin; human approvals (and other human actions) with `methods: ["EXAMINE"]` and
  the person as a `party` origin, listed in `metadata.parties`;
- findings against the NIST SP 800-53 controls the evidence supports: CM-3 (change control), CM-5 (access
  restrictions for change), AU-9 (protection of audit information), AU-10 (non-repudiation) and SA-10
  (developer configuration management), each satisfied or not with the observations behind it;
- compliance mappings of the policy rule that decided a gate (`compliance: [{framework, control}]` in the
  `decision` entry) become props of that decision's observation: `name: "compliance-control"`, `class`: the
  framework (a token, e.g. `SOC2`), `value`: the control (e.g. `CC8.1`), one prop per mapping;
- back-matter: the assessment plan `import-ap` points to (Gatekeeper's continuous gate, `#<uuid>`), every
  signed checkpoint (C2SP-style signed note, base64) and the checkpoint public key; observations cite the
  checkpoint that covers their entry as relevant evidence.

UUIDs are version-5, derived from tenant and content, so exporting the same log twice gives the same ids.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gatekeeper.audit.checkpoints import SignedCheckpoint
from gatekeeper.audit.records import format_time
from gatekeeper.audit.verify import VerificationResult
from gatekeeper.audit.views import redact

OSCAL_VERSION = "1.2.3"
NS = "https://gatekeeper.dev/ns/oscal"
_UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, NS)

CONTROLS: dict[str, str] = {
    "cm-3": "CM-3 Configuration Change Control",
    "cm-5": "CM-5 Access Restrictions for Change",
    "au-9": "AU-9 Protection of Audit Information",
    "au-10": "AU-10 Non-repudiation",
    "sa-10": "SA-10 Developer Configuration Management",
}
_HUMAN_KINDS = {"approval_decided", "policy_changed"}
_APPROVED = {"approve", "approved", "accept", "accepted"}
_APPROVAL_LEVELS = {"l2", "2"}
_WS = re.compile(r"\s+")
_FRAMEWORK = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,39}$")  # as gatekeeper.policy.compliance: an OSCAL token
_CONTROL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._()/-]{0,63}$")
MAX_COMPLIANCE_PROPS = 20


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(_UUID_NS, "/".join(str(p) for p in parts)))


def _line(value: object, limit: int = 200) -> str:
    """A single line with no leading/trailing space (OSCAL string and markup-line patterns)."""
    text = _WS.sub(" ", str(value)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text or "-"


def _prop(name: str, value: object) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": _line(value, 1000)}


def compliance_props(data: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """One `compliance-control` prop per mapping the decision recorded (`class` = framework, `value` =
    control). Entries written by other versions or by hand are read defensively: a mapping that is not a
    well-formed framework token and control id is left out, never put into the document unchecked."""
    mappings = data.get("compliance") if data else None
    if not isinstance(mappings, list):
        return []
    props: list[dict[str, str]] = []
    for mapping in mappings[:MAX_COMPLIANCE_PROPS]:
        if not isinstance(mapping, Mapping):
            continue
        framework, control = mapping.get("framework"), mapping.get("control")
        if not (isinstance(framework, str) and isinstance(control, str)):
            continue
        if _FRAMEWORK.match(framework) and _CONTROL.match(control):
            props.append({"name": "compliance-control", "ns": NS, "class": framework, "value": control})
    return props


def _get(data: Mapping[str, Any] | None, *names: str) -> Any:
    if not data:
        return None
    for name in names:
        if data.get(name) not in (None, "", []):
            return data[name]
    return None


def _approver(entry: Mapping[str, Any], data: Mapping[str, Any] | None) -> dict[str, str]:
    person = _get(data, "approver", "decided_by", "changed_by")
    info: dict[str, str] = {}
    if isinstance(person, Mapping):
        for key in ("oid", "upn", "name"):
            if person.get(key):
                info[key] = _line(person[key])
    elif person:
        info["name"] = _line(person)
    for key in ("upn", "name"):  # the approvals service records the approver's UPN next to the vote
        if not info.get(key) and data and isinstance(data.get(key), str) and data[key].strip():
            info[key] = _line(data[key])
    info.setdefault("id", info.get("oid") or _line(entry.get("actor") or info.get("upn") or "unknown"))
    info.setdefault("name", info.get("upn") or info["id"])
    return info


def _is_human(actor: object) -> bool:
    return isinstance(actor, str) and bool(actor) and not actor.startswith("system:")


def _human_vote(entry: Mapping[str, Any], data: Mapping[str, Any] | None) -> bool:
    """A person's counted approval decision (not the chain's own outcome record, not a refused vote)."""
    return _is_human(entry.get("actor")) and not (data and data.get("counted") is False)


def _approves(data: Mapping[str, Any] | None) -> bool:
    if not data:
        return False
    if str(data.get("chain_status") or "").lower() == "approved":
        return True
    return str(_get(data, "decision", "outcome", "result") or "").lower() in _APPROVED


def _describe_action(kind: str, subject: str, data: Mapping[str, Any], entry: Mapping[str, Any]) -> tuple[str, str]:
    """Action-level approvals (issue 13). The command is identified by its SHA-256, never quoted: commands can
    carry secrets-ish arguments, and the sealed audit entry keeps the text for whoever may open it."""
    if kind == "action_requested":
        who = _line(_get(data, "requested_by") or _get(data, "auth") or "an automation", 200)
        level = _line(_get(data, "level") or "?", 10)
        extras = [
            f"command SHA-256 {_line(data['command_sha256'], 64)}" if data.get("command_sha256") else "",
            f"plan digest {_line(data['plan_digest'], 80)}" if data.get("plan_digest") else "",
            f"change ticket {_line(data['ticket'], 100)}" if data.get("ticket") else "",
        ]
        details = "; ".join(x for x in extras if x)
        return (
            _line(f"Action requested: {subject}"),
            f"{who} asked to run one {_line(_get(data, 'action') or 'privileged', 40)} command on "
            f"{_line(_get(data, 'environment') or '?', 100)} ({_line(_get(data, 'resource') or 'no resource named')}); "
            f"gate level {level}, first answer {_line(_get(data, 'answer') or '?', 20)}"
            f"{'; ' + details if details else ''}.",
        )
    if kind in ("action_cancelled", "action_expired"):
        how = "cancelled by its requester" if kind == "action_cancelled" else "expired on its own timeout"
        return (
            _line(f"Action {how.split(' ')[0]}: {subject}"),
            f"The action request {subject} was {how} before a decision; it must not run"
            f"{'' if data.get('chain_ended') else ' (its approval chain was not running)'}.",
        )
    if kind == "action_reported":
        outcome = _line(_get(data, "outcome") or "?", 20)
        code = data.get("exit_code")
        if data.get("refused") is True:
            return (
                _line(f"Refused report: {outcome} for {subject}"),
                f"A client reported the action {subject} as {outcome} although it was "
                f"{_line(_get(data, 'status') or 'not approved', 40)}; the report was refused and recorded as an "
                "attempt.",
            )
        return (
            _line(f"Action {outcome}: {subject}"),
            f"The client reported the action {subject} as {outcome}"
            f"{' (exit code ' + _line(code, 20) + ')' if code is not None else ''} after it was "
            f"{_line(_get(data, 'status') or '?', 40)}.",
        )
    return _line(f"{kind.replace('_', ' ').capitalize()} for {subject}"), f"Audit entry {entry['seq']}: {kind}."


class _Builder:
    def __init__(
        self,
        bundle: Mapping[str, Any],
        opened: Mapping[int, Mapping[str, Any] | None],
        verification: VerificationResult,
    ) -> None:
        self.bundle = bundle
        self.tenant = str(bundle["tenant"])
        self.opened = opened
        self.verification = verification
        self.tool_uuid = _uuid(self.tenant, "component", "gatekeeper")
        self.plan_uuid = _uuid(self.tenant, "assessment-plan")
        self.key_uuid = _uuid(self.tenant, "checkpoint-public-key")
        self.parties: dict[str, dict[str, Any]] = {}
        self.checkpoints = sorted(
            (SignedCheckpoint.model_validate(c) for c in bundle.get("checkpoints", [])),
            key=lambda c: c.checkpoint().size,
        )
        self.by_control: dict[str, list[str]] = {c: [] for c in CONTROLS}
        self.violations: dict[str, list[str]] = {c: [] for c in CONTROLS}

    def checkpoint_uuid(self, signed: SignedCheckpoint) -> str:
        cp = signed.checkpoint()
        return _uuid(self.tenant, "checkpoint", cp.size, cp.root.hex())

    def covering_checkpoint(self, seq: int) -> SignedCheckpoint | None:
        for signed in self.checkpoints:
            if signed.checkpoint().size > seq:
                return signed
        return None

    def party(self, info: Mapping[str, str]) -> str:
        party_uuid = _uuid(self.tenant, "party", info["id"])
        if party_uuid not in self.parties:
            party: dict[str, Any] = {"uuid": party_uuid, "type": "person", "name": info["name"]}
            props = [_prop("entra-object-id", info["oid"])] if info.get("oid") else []
            if info.get("upn"):
                props.append(_prop("user-principal-name", info["upn"]))
            if props:
                party["props"] = props
            self.parties[party_uuid] = party
        return party_uuid

    # -- observations ----------------------------------------------------------------------------
    def observation(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        seq = int(entry["seq"])
        kind = str(entry["kind"])
        data = self.opened.get(seq)
        data = redact(data) if data is not None else None
        subject = _line(entry.get("subject") or entry.get("instance_id") or "-")
        obs_uuid = _uuid(self.tenant, "observation", seq, entry.get("entry_hash"))
        title, description = self.describe(kind, subject, data, entry)
        human = kind in _HUMAN_KINDS and _is_human(entry.get("actor"))
        if human:
            party_uuid = self.party(_approver(entry, data))
            origin = {
                "actors": [
                    {
                        "type": "party",
                        "actor-uuid": party_uuid,
                        "role-id": "approver" if kind == "approval_decided" else "policy-owner",
                    }
                ]
            }
        else:
            origin = {"actors": [{"type": "tool", "actor-uuid": self.tool_uuid}]}
        props = [
            _prop("audit-seq", seq),
            _prop("audit-kind", kind),
            _prop("audit-entry-hash", entry.get("entry_hash")),
        ]
        if entry.get("instance_id"):
            props.append(_prop("orchestration-instance", entry["instance_id"]))
        if kind == "decision":
            props += compliance_props(data)
        observation: dict[str, Any] = {
            "uuid": obs_uuid,
            "title": title,
            "description": description,
            "props": props,
            "methods": ["TEST"] if kind == "decision" else ["EXAMINE"],
            "origins": [origin],
            "collected": entry["at"],
        }
        covering = self.covering_checkpoint(seq)
        if covering is not None:
            size = covering.checkpoint().size
            observation["relevant-evidence"] = [
                {
                    "href": f"#{self.checkpoint_uuid(covering)}",
                    "description": f"Audit entry {seq} is a leaf of the Merkle tree whose root at size {size} is "
                    "signed "
                    "in this checkpoint.",
                }
            ]
        self.classify(kind, obs_uuid, entry, data)
        return observation

    def describe(
        self, kind: str, subject: str, data: Mapping[str, Any] | None, entry: Mapping[str, Any]
    ) -> tuple[str, str]:
        if data is None:
            return (
                _line(f"{kind} for {subject}"),
                f"Audit entry {entry['seq']} ({kind}); its data can no longer be opened (the tenant key was "
                "destroyed), but its integrity is still proven by the hash chain and the checkpoints.",
            )
        if kind == "decision" and data.get("final"):
            status = _get(data, "status") or "decided"
            return (
                _line(f"Gate outcome {status} for {subject}"),
                f"The gate for {subject} ended {_line(status)} at level {_line(_get(data, 'level') or '?')}"
                f"{': ' + _line(data['reason'], 500) if data.get('reason') else ''}.",
            )
        if kind == "decision":
            level = _get(data, "level", "gate_level") or "unknown"
            outcome = _get(data, "outcome", "status") or ("blocked" if data.get("blocked") else "recorded")
            reasons = _get(data, "reasons") or []
            lines = "\n".join(f"- {_line(r, 500)}" for r in reasons) if isinstance(reasons, list) else _line(reasons)
            return (
                _line(f"Gate decision {level} ({outcome}) for {subject}"),
                f"Gatekeeper evaluated the tenant policy for {subject} and set gate level {_line(level)} with "
                f"outcome {_line(outcome)}.\n\nReasons:\n{lines or '- none recorded'}",
            )
        if kind == "approval_decided":
            who = _approver(entry, data)
            decision = _get(data, "decision", "outcome") or "decided"
            comment = _get(data, "comment")
            text = (
                f"{who['name']} decided {_line(decision)} on the deployment {subject}"
                f"{' at stage ' + _line(data['stage']) if data.get('stage') not in (None, '') else ''}."
            )
            if comment:
                text += f"\n\nComment: {_line(comment, 2000)}"
            return _line(f"Approval {decision} by {who['name']} for {subject}"), text
        if kind == "approval_requested":
            approvers = _get(data, "approvers") or []
            names = (
                ", ".join(
                    _line(a.get("name") or a.get("upn") or a.get("id") if isinstance(a, Mapping) else a, 80)
                    for a in approvers
                )
                if isinstance(approvers, list)
                else _line(approvers)
            )
            return (
                _line(f"Approval requested for {subject}"),
                f"Approval requested for {subject}"
                f"{' from ' + names if names else ''}"
                f"{'; deadline ' + _line(data['deadline']) if data.get('deadline') else ''}.",
            )
        if kind == "callback":
            target = _get(data, "target", "provider") or "pipeline"
            result = _get(data, "result", "outcome", "state") or (
                ("approved" if data.get("approved") else "rejected") if "approved" in data else "sent"
            )
            status = data.get("status_code") or data.get("status")
            return (
                _line(f"Pipeline callback to {target}: {result}"),
                f"Gatekeeper reported the gate result to {_line(target)} for {subject}: {_line(result)}"
                f"{' (HTTP ' + _line(status) + ')' if status else ''}"
                f"{'; the pipeline did not acknowledge it' if data.get('ok') is False else ''}.",
            )
        if kind == "rollback":
            return (
                _line(f"Rollback of {subject}"),
                f"Rollback of {subject}: {_line(_get(data, 'result', 'outcome') or 'started')}. "
                f"Reason: {_line(_get(data, 'reason') or 'not recorded', 1000)}.",
            )
        if kind == "policy_changed":
            return (
                _line(f"Policy changed to version {_get(data, 'version') or '?'}"),
                f"The tenant's gate policy changed (version {_line(_get(data, 'version') or '?')}): "
                f"{_line(_get(data, 'summary') or 'no summary recorded', 2000)}",
            )
        if kind.startswith("action_"):
            return _describe_action(kind, subject, data, entry)
        if kind == "event_received":
            repo = _get(data, "repository", "repo") or "?"
            commit = _get(data, "commit", "sha") or "?"
            return (
                _line(f"Deployment request for {subject}"),
                f"Deployment request from {_line(_get(data, 'source') or 'a pipeline')} for repository "
                f"{_line(repo)} at commit {_line(commit)}"
                f"{' to environment ' + _line(data['environment']) if data.get('environment') else ''}.",
            )
        return _line(f"{kind.replace('_', ' ').capitalize()} for {subject}"), f"Audit entry {entry['seq']}: {kind}."

    def classify(self, kind: str, obs_uuid: str, entry: Mapping[str, Any], data: Mapping[str, Any] | None) -> None:
        if kind in ("decision", "approval_requested", "approval_decided", "callback", "rollback", "policy_changed"):
            self.by_control["cm-3"].append(obs_uuid)
        if kind in ("action_requested", "action_cancelled", "action_expired", "action_reported"):
            self.by_control["cm-3"].append(obs_uuid)
        if kind == "action_reported" and data is not None and data.get("refused") is True:
            self.violations["cm-3"].append(
                f"a client reported running action {_line(entry.get('instance_id'), 80)} although it was "
                f"{_line(_get(data, 'status') or 'not approved', 40)} (entry {entry['seq']})"
            )
        if kind == "approval_decided" and _human_vote(entry, data):
            self.by_control["cm-5"].append(obs_uuid)
            self.by_control["au-10"].append(obs_uuid)
        if kind == "policy_changed":
            self.by_control["sa-10"].append(obs_uuid)
        if kind in ("event_received", "decision") and data is not None and _get(data, "commit", "sha"):
            self.by_control["sa-10"].append(obs_uuid)  # the change is tied to a repository revision
        if (
            kind == "event_received"
            and data is not None
            and not (_get(data, "repository", "repo") and _get(data, "commit", "sha"))
            and "action" not in (data.get("labels") or ())  # an agent's command need not come from a revision
        ):
            self.violations["sa-10"].append(f"deployment request at entry {entry['seq']} names no repository/commit")

    def check_gates(self, entries: list[Mapping[str, Any]]) -> None:
        """CM-3: an approval-level (L2) decision must be followed by an approving human decision before any
        callback; CM-5: the requester never approves their own change."""
        by_instance: dict[str, list[Mapping[str, Any]]] = {}
        for entry in entries:
            if entry.get("instance_id"):
                by_instance.setdefault(str(entry["instance_id"]), []).append(entry)
        for instance, items in by_instance.items():
            requester = None
            needs_approval = False
            approved = False
            for entry in items:
                data = self.opened.get(int(entry["seq"])) or {}
                kind = entry.get("kind")
                if kind == "event_received":
                    requester = _get(data, "requested_by", "requester", "sender") or requester
                elif kind == "decision":
                    requester = _get(data, "requester", "requested_by") or requester
                    level = str(_get(data, "level", "gate_level") or "").lower()
                    needs_approval = needs_approval or level in _APPROVAL_LEVELS
                elif kind == "approval_decided":
                    if _human_vote(entry, data):
                        who = _approver(entry, data)
                        if requester and str(requester).lower() in {
                            str(x).lower() for x in (who.get("oid"), who.get("upn"), who["id"], entry.get("actor")) if x
                        }:
                            self.violations["cm-5"].append(f"the requester approved their own change ({instance})")
                    approved = approved or _approves(data)
                elif kind == "callback" and needs_approval and not approved:
                    told_go = data.get("approved") is True or (
                        str(_get(data, "result", "outcome", "state") or "").lower() in _APPROVED
                    )
                    if told_go:
                        self.violations["cm-3"].append(
                            f"deployment {instance} was approved to the pipeline without a human approval"
                        )

    def findings(self) -> list[dict[str, Any]]:
        v = self.verification
        if not v.ok:
            self.violations["au-9"].append(f"the log failed verification: {v.summary()}")
            self.violations["au-10"].append("the log failed verification")
        elif not v.trusted_key:
            self.violations["au-10"].append("checkpoint signatures were checked against an untrusted key")
        if not self.checkpoints:
            self.violations["au-10"].append("no signed checkpoint covers the exported entries")
        descriptions = {
            "cm-3": "Every deployment request passed the tenant's gate: decisions, approval requests and decisions, "
            "pipeline callbacks and rollbacks are recorded for each change.",
            "cm-5": "Changes that need approval were approved by authenticated people other than the requester.",
            "au-9": f"The audit log is append-only, hash-chained and covered by signed Merkle checkpoints kept "
            f"in immutable storage; verification: {v.summary()}.",
            "au-10": "Each approval is bound to an authenticated identity and to a signed checkpoint, so it cannot "
            "be repudiated or altered afterwards.",
            "sa-10": "Every deployment request names the repository and commit it deploys; policy changes are "
            "recorded.",
        }
        out = []
        for control, title in CONTROLS.items():
            violations = self.violations[control]
            evidence = self.by_control[control]
            satisfied = not violations and (bool(evidence) or control == "au-9")
            finding: dict[str, Any] = {
                "uuid": _uuid(self.tenant, "finding", control, v.size, v.root),
                "title": title,
                "description": descriptions[control],
                "origins": [{"actors": [{"type": "tool", "actor-uuid": self.tool_uuid}]}],
                "target": {
                    "type": "statement-id",
                    "target-id": f"{control}_smt",
                    "status": {
                        "state": "satisfied" if satisfied else "not-satisfied",
                        "reason": "pass" if satisfied else "fail",
                    },
                },
            }
            if violations or not satisfied:
                finding["target"]["status"]["remarks"] = (
                    "\n".join(f"- {_line(x, 500)}" for x in violations)
                    or "No evidence for this control in the exported range."
                )
            if evidence:
                finding["related-observations"] = [{"observation-uuid": u} for u in evidence]
            out.append(finding)
        return out

    def back_matter(self) -> dict[str, Any]:
        resources: list[dict[str, Any]] = [
            {
                "uuid": self.plan_uuid,
                "title": "Gatekeeper continuous deployment-gate assessment plan",
                "description": (
                    "Every deployment request of the tenant is assessed automatically before it runs: Gatekeeper "
                    "evaluates the tenant's policy (method TEST) and sets gate level L0-L3; level L2 requires "
                    "approval by authorised people (separation of duties), level L3 refuses automation. Every step "
                    "is appended to the tenant's tamper-evident audit log (RFC 6962 Merkle tree, signed checkpoints)."
                ),
                "props": [_prop("tenant", self.tenant)],
            }
        ]
        for signed in self.checkpoints:
            cp = signed.checkpoint()
            resources.append(
                {
                    "uuid": self.checkpoint_uuid(signed),
                    "title": f"Signed audit checkpoint: {cp.size} entries",
                    "description": f"Checkpoint of log {cp.origin} at size {cp.size}, signed {signed.algorithm} by key "
                    f"{signed.key_id}.",
                    "props": [
                        _prop("tree-size", cp.size),
                        _prop("root-hash", cp.root.hex()),
                        _prop("checkpoint-time", cp.time),
                        _prop("signing-key-fingerprint", signed.key_fingerprint),
                    ],
                    "base64": {
                        "filename": f"checkpoint-{cp.size:020d}.txt",
                        "media-type": "text/plain",
                        "value": base64.b64encode(signed.signed_note_text().encode("utf-8")).decode("ascii"),
                    },
                }
            )
        keys = self.bundle.get("public_keys") or []
        if keys:
            resources.append(
                {
                    "uuid": self.key_uuid,
                    "title": "Checkpoint signing public key",
                    "description": "PEM public key(s) that verify the checkpoint signatures "
                    "(python -m gatekeeper audit verify BUNDLE --public-key PEM).",
                    "base64": {
                        "filename": "checkpoint-public-key.pem",
                        "media-type": "application/x-pem-file",
                        "value": base64.b64encode("\n".join(keys).encode("ascii")).decode("ascii"),
                    },
                }
            )
        return {"resources": resources}


def to_oscal(
    bundle: Mapping[str, Any],
    opened: Mapping[int, Mapping[str, Any] | None],
    verification: VerificationResult,
    *,
    generated_at: datetime,
    time_from: str | None = None,
    time_to: str | None = None,
) -> dict[str, Any]:
    """The assessment-results document for the bundle's entries within [time_from, time_to] (all when None).
    `opened` maps seq to the entry's opened data (None when it can no longer be opened)."""
    builder = _Builder(bundle, opened, verification)
    tenant = builder.tenant
    entries = [
        e
        for e in bundle.get("entries", [])
        if isinstance(e, Mapping)
        and isinstance(e.get("at"), str)
        and (time_from is None or e["at"] >= time_from)
        and (time_to is None or e["at"] <= time_to)
    ]
    observations = [builder.observation(e) for e in entries]
    builder.check_gates(entries)
    findings = builder.findings()
    now = format_time(generated_at)
    start = time_from or (entries[0]["at"] if entries else now)
    end = time_to or (entries[-1]["at"] if entries else now)
    result: dict[str, Any] = {
        "uuid": _uuid(tenant, "result", verification.size, verification.root, start, end),
        "title": f"Deployment gate evidence for tenant {tenant}",
        "description": (
            f"Gate decisions, approvals, pipeline callbacks, rollbacks and policy changes recorded in tenant "
            f"{tenant}'s audit log between {start} and {end}. Log verification: {verification.summary()}."
        ),
        "start": start,
        "end": end,
        "props": [
            _prop("audit-log-size", verification.size),
            _prop("audit-log-root", verification.root or "-"),
            _prop("audit-log-verified", "true" if verification.ok else "false"),
        ],
        "local-definitions": {
            "components": [
                {
                    "uuid": builder.tool_uuid,
                    "type": "software",
                    "title": "Gatekeeper",
                    "description": "Serverless CI/CD gate: evaluates deployment requests against the tenant policy, "
                    "runs approval chains and records every step in a signed, append-only audit log.",
                    "status": {"state": "operational"},
                }
            ],
        },
        "reviewed-controls": {
            "control-selections": [{"include-controls": [{"control-id": c} for c in CONTROLS]}],
        },
        "findings": findings,
    }
    if observations:
        result["observations"] = observations
    metadata: dict[str, Any] = {
        "title": f"Gatekeeper audit evidence: tenant {tenant}",
        "last-modified": now,
        "version": f"log-size-{verification.size}",
        "oscal-version": OSCAL_VERSION,
        "roles": [
            {"id": "approver", "title": "Deployment approver"},
            {"id": "policy-owner", "title": "Gate policy owner"},
        ],
        "parties": [
            {"uuid": _uuid(tenant, "party", "tenant"), "type": "organization", "name": f"Tenant {tenant}"},
            *builder.parties.values(),
        ],
    }
    return {
        "assessment-results": {
            "uuid": _uuid(tenant, "assessment-results", verification.size, verification.root, start, end),
            "metadata": metadata,
            "import-ap": {
                "href": f"#{builder.plan_uuid}",
                "remarks": "Gatekeeper's continuous assessment plan, described in back-matter.",
            },
            "results": [result],
            "back-matter": builder.back_matter(),
        }
    }
