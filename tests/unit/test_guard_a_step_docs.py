"""docs/guard-a-step.md is copy-paste material: its snippets must match the action's inputs and outputs, the
pipeline template's parameters and the CLI's options, or a reader's first run fails."""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from gatekeeper.cli import build_parser
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "guard-a-step.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def test_the_github_snippet_uses_only_the_actions_inputs_and_outputs() -> None:
    action = yaml.safe_load((ROOT / "actions" / "request-approval" / "action.yml").read_text(encoding="utf-8"))
    workflow: dict[str, Any] = next(yaml.safe_load(b) for b in blocks("yaml") if "request-approval@" in b)
    assert workflow["permissions"]["id-token"] == "write"
    steps = workflow["jobs"]["deploy"]["steps"]
    gate = next(s for s in steps if "request-approval@" in s.get("uses", ""))
    assert set(gate["with"]) <= set(action["inputs"])
    guarded = [s for s in steps if s.get("if") == f"steps.{gate['id']}.outputs.approved == 'true'"]
    assert len(guarded) == 1
    for name in re.findall(r"steps\.gate\.outputs\.([a-z-]+)", yaml.safe_dump(workflow)):
        assert name in action["outputs"], name
    report = yaml.safe_load((ROOT / "actions" / "report-outcome" / "action.yml").read_text(encoding="utf-8"))
    reporter = next(s for s in steps if "report-outcome@" in s.get("uses", ""))
    assert set(reporter["with"]) <= set(report["inputs"])


def test_the_pipelines_snippet_uses_only_the_templates_parameters() -> None:
    pipeline = next(yaml.safe_load(b) for b in blocks("yaml") if "request-approval.yml@" in b)
    uses = [s for s in pipeline["steps"] if "template" in s]
    assert len(uses) == 2
    for use in uses:
        name = use["template"].split("@")[0]
        template = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
        known = {p["name"] for p in template["parameters"]}
        assert set(use["parameters"]) <= known, name
        required = {p["name"] for p in template["parameters"] if "default" not in p}
        assert required <= set(use["parameters"]), name


def test_the_shell_snippet_parses_with_the_cli() -> None:
    (script,) = blocks("bash")
    line = re.search(r"python -m gatekeeper (request .*?--file customers\.sql)", script.replace("\\\n", " "))
    assert line, script
    args = build_parser().parse_args(shlex.split(line.group(1)))
    assert args.argv == ["pg_dump", "--table", "customers", "--file", "customers.sql"] and args.wait == ""
