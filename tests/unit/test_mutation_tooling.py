"""The mutation tooling's own contract (issue 21): groups, the smoke list and the equivalent-mutant review.

The tools run outside the suite (make mutation, make mutation-smoke); these checks keep their configuration honest
so a run cannot silently test less than it claims.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mutation.run import Equivalent, Survivor, load_equivalents, load_groups, score
from mutation.smoke import anchor_problems, load_mutants

ROOT = Path(__file__).resolve().parents[2]
THE_NINE = {
    "shared-secret-prefix",
    "connector-signature-off",
    "tenant-out-of-dedupe-key",
    "tenant-out-of-instance-id",
    "requester-not-case-folded-where-recorded",
    "shared-secret-rotation-last-only",
    "audit-head-last-hash-ignored",
    "audit-split-view-checkpoints",
    "outside-hours-block-ignored",
    "envelope-delimiter-join",
}


def test_every_group_names_existing_modules_and_tests():
    groups, exclude = load_groups()
    expected = {"signatures", "identity", "approvals", "dispatcher", "policy", "envelope", "audit", "merkle"}
    assert expected | {"tenancy", "parsing"} <= set(groups)
    mutated = {m for g in groups.values() for m in g.modules}
    for module in (  # the trust-critical modules after issues 10 and 11 moved them
        "gatekeeper/gates/decisions.py",
        "gatekeeper/security/requester.py",
        "gatekeeper/tenancy/ownership.py",
        "gatekeeper/ingest/scope.py",
        "gatekeeper/audit/strict_json.py",
        "gatekeeper/json_bounded.py",
    ):
        assert module in mutated, module
    for group in groups.values():
        for path in (*group.modules, *group.tests):
            assert (ROOT / path).exists(), f"{group.name}: {path}"
        assert group.timeout > 0
    assert exclude, "the operator filter keeps the run within its time budget"


def test_the_smoke_holds_the_spot_check_survivors_and_about_thirty_mutants():
    mutants = load_mutants()
    assert {m.id for m in mutants} >= THE_NINE
    assert 25 <= len(mutants) <= 40
    for m in mutants:
        assert m.why and m.tests and m.original != m.replacement


def test_a_moved_anchor_is_named(tmp_path: Path):
    [mutant] = [m for m in load_mutants() if m.id == "shared-secret-prefix"]
    (tmp_path / "gatekeeper/security").mkdir(parents=True)
    (tmp_path / "tests/unit").mkdir(parents=True)
    (tmp_path / "tests/unit/test_signatures.py").write_text("")
    (tmp_path / mutant.file).write_text("def verify():\n    return compare(candidate, secret)\n")
    [problem] = anchor_problems([mutant], tmp_path)
    assert problem.startswith("shared-secret-prefix:") and "not found" in problem and "re-anchor" in problem


def test_every_equivalent_mutant_has_a_real_reason():
    for equivalent in load_equivalents():
        assert (ROOT / equivalent.module).exists(), equivalent.module
        assert len(equivalent.reason) >= 30


def _row(module: str, outcome: str, diff: str = "", operator: str = "core/AddNot") -> tuple[dict, dict]:
    item = {"mutations": [{"module_path": module, "operator_name": operator, "start_pos": [7, 0]}]}
    return item, {"worker_outcome": "normal", "test_outcome": outcome, "diff": diff}


def test_score_excludes_reviewed_equivalents_from_the_denominator():
    diff = "--- a\n+++ b\n@@ -7 +7 @@\n-    x = a < b\n+    x = a <= b\n"
    rows = [
        _row("m.py", "killed"),
        _row("m.py", "killed"),
        _row("m.py", "killed"),
        _row("m.py", "survived", diff),
        _row("m.py", "survived", "--- a\n+++ b\n-    y = 1\n+    y = 2\n"),
        ({"mutations": [{"module_path": "m.py", "operator_name": "core/X", "start_pos": [1, 0]}]}, None),
    ]
    equivalent = Equivalent("m.py", "x = a < b", "x = a <= b", "a and b are never equal here, see the invariant")
    [stats] = score(rows, [equivalent]).values()
    assert (stats.mutants, stats.killed, stats.survived, stats.equivalent) == (5, 3, 1, 1)
    assert stats.score == pytest.approx(75.0)
    assert [s.equivalent is not None for s in stats.survivors] == [True, False]


def test_an_equivalent_entry_matches_only_its_module_and_lines():
    survivor = Survivor("a.py", "core/AddNot", 3, "-    if ok:\n+    if not ok:\n")
    assert Equivalent("a.py", "if ok:", "if not ok:", "r" * 30).matches(survivor)
    assert not Equivalent("b.py", "if ok:", "if not ok:", "r" * 30).matches(survivor)
    assert not Equivalent("a.py", "if done:", "if not ok:", "r" * 30).matches(survivor)
    assert not Equivalent("a.py", "if ok:", "if not ok:", "r" * 30, operator="core/Other").matches(survivor)


def test_every_smoke_anchor_applies_to_the_code_as_it_is():
    """A change that moves a smoke mutant's line fails here, in `make test`, naming the mutant to re-anchor,
    instead of only in the CI smoke that runs after the suite."""
    assert anchor_problems(load_mutants()) == []
