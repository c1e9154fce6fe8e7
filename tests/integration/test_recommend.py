"""Recommendations learned from generated histories written through the real audit log on Azurite (issue 16):
the model recovers the rule that is always approved and the ones often rolled back, calibration is reported,
training never crosses tenants, the timer refit stores a versioned model and audits it, and `policy
recommend` proposes the expected diffs and refuses to lower L3 or compliance-tagged rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import yaml

from devstack.recommend_history import Kind, generate, write
from gatekeeper.cli import main
from gatekeeper.policy import load_policy
from gatekeeper.policy.store import PolicyStore
from gatekeeper.recommend.features import gate_features
from gatekeeper.recommend.model import fit, recommend
from gatekeeper.recommend.store import CURRENT, KEEP_VERSIONS, PARTITION, ModelStore, refit
from gatekeeper.services import set_services
from gatekeeper.store.tables import TablePurpose, tenant_table_name
from tests.support.gatekeeper_env import GatekeeperEnv, app_functions, http_function, make_env

pytestmark = pytest.mark.azurite

KINDS = [
    Kind("staging-deploy", "staging", "contoso/api", 100),
    Kind("prod-web", "production", "contoso/web", 60, rolled_back=24),
    Kind("prod-db", "production", "contoso/db", 30, rolled_back=26),
    Kind("sox-deploy", "sox", "contoso/ledger", 100, compliance=(("SOC2", "CC8.1"),)),
    Kind("secrets", "vault", "contoso/vault", 80, level="L3"),
    Kind("qa-deploy", "qa", "contoso/qa", 30, level="L1", flagged=10),
    Kind("uat-deploy", "uat", "contoso/uat", 30, overridden=9),
]
POLICY = """\
version: 1
defaults:
  level: L2
  approval:
    stages:
      - {name: ops, approvers: [ops@contoso.com], quorum: 1, timeout: PT4H, on_timeout: reject}
rules:
  - name: staging-deploy
    match: {environments: [staging]}
    level: L2
  - name: prod-web
    match: {environments: [production], repositories: [contoso/web]}
    level: L2
  - name: prod-db
    match: {environments: [production], repositories: [contoso/db]}
    level: L2
  - name: sox-deploy
    match: {environments: [sox]}
    level: L2
    compliance: [{framework: SOC2, control: CC8.1}]
  - name: secrets
    match: {environments: [vault]}
    level: L3
  - name: qa-deploy
    match: {environments: [qa]}
    level: L1
  - name: uat-deploy
    match: {environments: [uat]}
    level: L2
"""


class _Timer(func.TimerRequest):
    @property
    def past_due(self) -> bool:
        return False


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def env(azurite, key_dir) -> GatekeeperEnv:
    """Tenant A with the known history of KINDS over the last 80 days, through its real audit log."""
    env = make_env(azurite.connection_string, key_dir)
    write(env.services.audit_for(env.tenant_id), generate(KINDS, datetime.now(UTC)))
    return env


def features(rule: str, environment: str, repository: str) -> dict[str, str]:
    facts = {"source": "generic", "environment": environment, "repository": repository}
    decision = {"rule": rule, "action": "deploy", "quality": {"result": "pass"}, "reasons": []}
    return gate_features(facts, decision, datetime.now(UTC).replace(hour=11), 0)


def models(env: GatekeeperEnv, tenant: str) -> ModelStore:
    return ModelStore(env.storage, tenant, env.services.sealer)


def test_refit_recovers_the_always_approved_rule_and_the_often_rolled_back_ones(env):
    now = datetime.now(UTC)
    model = refit(env.tenant_id, env.services.audit_for(env.tenant_id), models(env, env.tenant_id), now)
    assert model is not None and model.samples == 100 + 60 + 30 + 100 + 30  # L2 gates people decided
    always = recommend(model, features("staging-deploy", "staging", "contoso/api"), now)
    often = recommend(model, features("prod-web", "production", "contoso/web"), now)
    mostly = recommend(model, features("prod-db", "production", "contoso/db"), now)
    assert always.verdict == "approve" and always.p_approve > 0.95 and always.confidence > 0.85
    assert often.verdict == "needs_attention" and abs(often.p_approve - 36 / 60) < 0.15
    assert mostly.verdict == "reject" and mostly.p_approve < 0.35
    assert mostly.factors[0].weight < 0
    assert any(f.name == "rule=prod-db" and "4 approved and kept, 26 rejected" in f.detail for f in mostly.factors)
    assert always.model_version == model.version == models(env, env.tenant_id).current().version  # type: ignore[union-attr]
    # calibration: leave-one-out Brier score against the base rate's
    assert model.brier is not None and model.base_rate_brier is not None
    assert model.brier < model.base_rate_brier * 0.8


def test_a_second_tenants_history_does_not_change_the_first_tenants_model(env):
    now = datetime.now(UTC)
    before = refit(env.tenant_id, env.services.audit_for(env.tenant_id), models(env, env.tenant_id), now)
    other = "t" + uuid.uuid4().hex[:12]
    # the same rule, environment and repository names, the opposite outcomes
    contrary = [Kind("staging-deploy", "staging", "contoso/api", 120, rejected=120)]
    write(env.services.audit_for(other), generate(contrary, now, seed=11))
    after = refit(env.tenant_id, env.services.audit_for(env.tenant_id), models(env, env.tenant_id), now)
    theirs = refit(other, env.services.audit_for(other), models(env, other), now)
    assert before is not None and after is not None and theirs is not None
    assert (after.samples, after.good, after.bad, after.counts) == (
        before.samples,
        before.good,
        before.bad,
        before.counts,
    )
    assert after.counts["rule"]["staging-deploy"] == (100, 0)
    assert theirs.counts["rule"] == {"staging-deploy": (0, 120)}
    assert recommend(after, features("staging-deploy", "staging", "contoso/api"), now).verdict == "approve"
    assert models(env, env.tenant_id).current().counts == after.counts  # type: ignore[union-attr]
    assert models(env, other).current().counts == theirs.counts  # type: ignore[union-attr]


def test_the_timer_refits_every_registered_tenant_and_stores_a_versioned_model(env):
    [timer] = [f for f in app_functions() if f.get_function_name() == "recommendation_refit"]
    [binding] = [b for b in timer.get_bindings() if b.type == "timerTrigger"]
    assert binding.schedule == "0 40 2 * * *"
    set_services(env.services)
    try:
        http_function("recommendation_refit")(_Timer())
    finally:
        set_services(None)
    table = env.storage.table(tenant_table_name(env.tenant_id, TablePurpose.MODELS))
    rows = {e["RowKey"]: e for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION})}
    current = models(env, env.tenant_id).current()
    assert current is not None and CURRENT in rows and current.version in rows
    assert "staging-deploy" not in str(rows[CURRENT])  # sealed with the tenant's key: no names in the table
    assert models(env, env.tenant_id).version(current.version) == current
    fitted = [r for r in env.services.audit_for(env.tenant_id).records() if r.kind == "model_fitted"]
    last = fitted[-1].data
    assert last["model_version"] == current.version and last["samples"] == current.samples
    assert set(last) >= {"model_version", "samples", "brier", "base_rate_brier", "features"}
    assert last["brier"] < last["base_rate_brier"] and "rule" in last["features"]
    assert env.services.recommender.model(env.tenant_id) == current  # the process uses the new model at once


@pytest.fixture
def cli(env, key_dir, monkeypatch, azurite):
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(key_dir))
    PolicyStore(env.storage, env.tenant_id).publish(POLICY, published_by="test")

    def run(*argv: str) -> int:
        return main([*argv, "--storage-connection", azurite.connection_string])

    return run


def _rule(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in document["rules"] if r["name"] == name)


def test_policy_recommend_proposes_the_expected_diffs_and_never_lowers_l3_or_compliance(env, cli, tmp_path, capsys):
    out = tmp_path / "proposed.yaml"
    assert cli("policy", "recommend", "--tenant", env.tenant_id, "--since", "90d", "--out", str(out)) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert any(
        line.startswith(
            "rule staging-deploy: 100 approvals, 0 rejections, 0 rollbacks in 90 days (good rate 100.0%, "
            "95% Wilson interval 96.3%-100.0%) -> propose L1"
        )
        for line in lines
    ), text
    assert any(
        line.startswith("rule qa-deploy: 20 approvals, 0 rejections, 10 rollbacks") and line.endswith("-> propose L2")
        for line in lines
    ), text
    assert any(
        line.startswith("rule uat-deploy: 30% overridden (9 of 30") and line.endswith("-> review the rule")
        for line in lines
    ), text
    assert any(
        line.startswith("rule sox-deploy: 100 approvals") and "not proposed" in line and "SOC2 CC8.1" in line
        for line in lines
    ), text
    assert any(
        line.startswith("rule secrets: 80 approvals") and "L3 rules are never lowered" in line for line in lines
    ), text
    assert not any(line.startswith(("rule prod-web", "rule prod-db")) for line in lines)  # already L2: nothing to do
    diff = [line for line in lines if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    assert sorted(diff) == sorted(["-  level: L2", "+  level: L1", "-  level: L1", "+  level: L2"])
    proposed = yaml.safe_load(out.read_text())
    assert (_rule(proposed, "staging-deploy")["level"], _rule(proposed, "qa-deploy")["level"]) == ("L1", "L2")
    assert _rule(proposed, "sox-deploy")["level"] == "L2" and _rule(proposed, "secrets")["level"] == "L3"
    assert load_policy(out).rules[0].name == "staging-deploy"
    assert cli("policy", "publish", "--tenant", env.tenant_id, str(out), "--by", "admin") == 0  # as proposed


def test_policy_recommend_names_the_bad_option_and_exits_2(env, cli, capsys):
    assert cli("policy", "recommend", "--tenant", env.tenant_id, "--since", "ninety") == 2
    assert "--since: 'ninety' is not a number of days" in capsys.readouterr().err
    assert cli("policy", "recommend", "--tenant", "t" + uuid.uuid4().hex[:12]) == 2  # no policy published


def test_the_timer_skips_a_tenant_without_gates_and_goes_on_past_one_whose_history_cannot_be_read(
    azurite, tmp_path, caplog
):
    from azure.data.tables import UpdateMode

    from gatekeeper.audit.log import ENTRY_PARTITION, HEAD_ROW
    from gatekeeper.tenancy.model import TenantRecord

    # The registry lists tenants in id order: the broken and the empty one first, the one with gates last.
    broken, empty, learning = ("t" + prefix + uuid.uuid4().hex[:9] for prefix in ("000", "001", "fff"))
    env = make_env(
        azurite.connection_string,
        tmp_path / "keys",
        extra_tenants=tuple(TenantRecord(tenant_id=t, display_name=t) for t in (broken, empty, learning)),
    )
    now = datetime.now(UTC)
    for tenant in (broken, learning):
        write(env.services.audit_for(tenant), generate([Kind("staging-deploy", "staging", "contoso/api", 12)], now))
    table = env.storage.tenant_table(broken, TablePurpose.AUDIT)
    head = dict(table.get_entity(ENTRY_PARTITION, HEAD_ROW))
    table.update_entity({**head, "size": "not-a-number"}, mode=UpdateMode.REPLACE)
    set_services(env.services)
    try:
        with caplog.at_level("INFO", logger="gatekeeper.recommend"):
            http_function("recommendation_refit")(_Timer())
    finally:
        set_services(None)
    assert models(env, empty).current() is None  # nothing to learn from: nothing stored
    learned = models(env, learning).current()
    assert learned is not None and learned.samples == 12
    assert env.services.recommender.model(learning) == learned
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0] == ("ERROR", f"recommendation refit failed for tenant {broken}")
    assert [line for line in lines if empty in line[1] or broken in line[1]] == [lines[0]]
    assert len(lines) == 2 and lines[1][1].startswith(f"tenant {learning}: recommendation model ")


class _AuditThatFailsToAppend:
    """The tenant's real audit log for reading history, whose append fails (its storage went away)."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def records(self, from_seq: int = 0, to_seq: int | None = None) -> Any:
        return self._log.records(from_seq, to_seq)

    def append(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("audit storage unavailable")


def test_a_model_whose_fit_could_not_be_audited_is_never_put_in_use(env):
    """Every model a recommendation cites has its `model_fitted` entry: the version is stored first, the
    entry written, and only then the version made current."""
    tenant = "t" + uuid.uuid4().hex[:12]
    log = env.services.audit_for(tenant)
    write(log, generate([Kind("staging-deploy", "staging", "contoso/api", 40)], datetime.now(UTC), seed=5))
    store = models(env, tenant)
    first = refit(tenant, log, store, datetime(2026, 12, 1, 2, 40, tzinfo=UTC))
    assert first is not None and store.current() == first
    write(log, generate([Kind("prod-db", "production", "contoso/db", 30, rolled_back=26)], datetime.now(UTC), seed=6))
    with pytest.raises(RuntimeError, match="audit storage unavailable"):
        refit(tenant, _AuditThatFailsToAppend(log), store, datetime(2026, 12, 2, 2, 40, tzinfo=UTC))
    assert store.current() == first  # the previous model stays in use

    def fitted() -> list[str]:
        return [r.data["model_version"] for r in log.records() if r.kind == "model_fitted"]

    assert fitted() == [first.version]
    again = refit(tenant, log, store, datetime(2026, 12, 2, 2, 41, tzinfo=UTC))  # the next refit goes through
    assert again is not None and store.current() == again and again.version != first.version
    assert fitted() == [first.version, again.version]


def test_two_refits_that_overlap_keep_the_newer_model_in_use_and_prune_without_failing(env):
    """Two refits of one tenant at once (the daily timer and a second run): the one that finishes last used to
    put its older model back in use, and its pruning failed on a version the other had already dropped."""
    tenant = "t" + uuid.uuid4().hex[:12]
    store, other = models(env, tenant), models(env, tenant)
    start = datetime(2031, 1, 1, 2, 40, tzinfo=UTC)
    fitted = [fit(tenant, [], start + timedelta(minutes=i)) for i in range(KEEP_VERSIONS + 2)]
    for model in fitted:
        store.add_version(model)
    older, newer = fitted[-2], fitted[-1]
    seen = store.versions()  # this refit lists the versions to prune ...
    other.make_current(newer)  # ... the other refit, started later, finishes first and prunes ...
    store.make_current(older)  # ... then this one: the newer model stays in use
    current = store.current()
    assert current is not None and current.version == newer.version
    store.prune(seen)  # the versions it listed, some dropped by the other meanwhile: no error
    assert store.versions() == [m.version for m in fitted[-KEEP_VERSIONS:]]
