"""`make mutation`: mutate the trust-critical modules with cosmic-ray, group by group, and report per module.

Why cosmic-ray: it runs an arbitrary test command per mutant in the project's own layout, so every group runs only
the tests that cover it, and the tests keep finding Azurite's binary, node_modules and ../shared/fixtures where the
project keeps them. The mutants are applied to a scratch copy (never to the working tree), so an interrupted run
leaves no mutated file behind.

Per module it prints mutants, killed, survived, equivalent and the score killed / (mutants - equivalent), then
every survivor with its diff. Equivalent mutants are reviewed by hand in mutation/equivalent.toml.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
GROUPS_FILE = HERE / "groups.toml"
EQUIVALENT_FILE = HERE / "equivalent.toml"
WORK = ROOT / ".mutation"
COPY_IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".mutation", "demo-output", ".azurite"
)


@dataclass(frozen=True)
class Group:
    name: str
    description: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    timeout: float


@dataclass(frozen=True)
class Equivalent:
    module: str
    original: str
    mutated: str
    reason: str
    operator: str | None = None

    def matches(self, survivor: Survivor) -> bool:
        if survivor.module != self.module or (self.operator and survivor.operator != self.operator):
            return False
        lines = survivor.diff.splitlines()
        removed = [line[1:] for line in lines if line.startswith("-") and not line.startswith("---")]
        added = [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")]
        if not any(self.original in line for line in removed):
            return False
        return not added if not self.mutated else any(self.mutated in line for line in added)


@dataclass
class Survivor:
    module: str
    operator: str
    line: int
    diff: str
    equivalent: Equivalent | None = None


@dataclass
class ModuleScore:
    module: str
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    incompetent: int = 0
    equivalent: int = 0
    survivors: list[Survivor] = field(default_factory=list)

    @property
    def score(self) -> float:
        denominator = self.mutants - self.equivalent - self.incompetent
        return 100.0 * self.killed / denominator if denominator > 0 else 100.0


def load_groups(path: Path = GROUPS_FILE) -> tuple[dict[str, Group], list[str]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    groups = {}
    for name, raw in data["groups"].items():
        groups[name] = Group(
            name=name,
            description=str(raw.get("description", "")),
            modules=tuple(raw["modules"]),
            tests=tuple(raw["tests"]),
            timeout=float(raw.get("timeout", 120)),
        )
    return groups, list(data.get("operators", {}).get("exclude", []))


def load_equivalents(path: Path = EQUIVALENT_FILE) -> list[Equivalent]:
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out = []
    for index, raw in enumerate(data.get("equivalent", [])):
        missing = [k for k in ("module", "original", "reason") if not str(raw.get(k, "")).strip()]
        if "mutated" not in raw:
            missing.append("mutated (an empty string for a deleted line)")
        if missing:
            raise SystemExit(f"{path.name}: equivalent[{index}] lacks {', '.join(missing)}")
        if len(raw["reason"].strip()) < 30:
            raise SystemExit(f"{path.name}: equivalent[{index}] ({raw['module']}): give a real reason")
        out.append(Equivalent(raw["module"], raw["original"], raw["mutated"], raw["reason"], raw.get("operator")))
    return out


def scratch_copy(destination: Path) -> Path:
    """A fresh copy of the project (symlinks kept: .venv, node_modules) in `destination`, beside a link to
    ../shared as in the worktree. Anything else in `destination` (a session) is kept."""
    destination.mkdir(parents=True, exist_ok=True)
    repo = destination / ROOT.name
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(ROOT, repo, symlinks=True, ignore=COPY_IGNORE)
    shared = ROOT.parent / "shared"
    if shared.exists() and not (destination / "shared").exists():
        (destination / "shared").symlink_to(shared)
    return repo


def test_command(tests: tuple[str, ...]) -> str:
    """Fail fast: the first failing test kills the mutant."""
    return f"{sys.executable} -m pytest -x -q --no-header -o addopts= -p no:cacheprovider " + " ".join(tests)


def write_config(repo: Path, group: Group, modules: list[str], exclude: list[str]) -> Path:
    config = repo / f"cosmic-ray-{group.name}.toml"
    lines = [
        "[cosmic-ray]",
        f"module-path = {json.dumps(modules)}",
        f"timeout = {group.timeout}",
        "excluded-modules = []",
        f"test-command = {json.dumps(test_command(group.tests))}",
        "",
        "[cosmic-ray.distributor]",
        'name = "local"',
        "",
        "[cosmic-ray.filters.operators-filter]",
        f"exclude-operators = {json.dumps(exclude)}",
        "",
    ]
    config.write_text("\n".join(lines), encoding="utf-8")
    return config


def _run(args: list[str], cwd: Path, log: Path) -> None:
    with log.open("a", encoding="utf-8") as out:
        out.write("$ " + " ".join(args) + "\n")
        out.flush()
        result = subprocess.run(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed ({result.returncode}); see {log}")


def run_partition(
    group: Group, modules: list[str], exclude: list[str], slot: int, retest: bool = False
) -> subprocess.Popen[bytes]:
    """Start one cosmic-ray session over `modules` in its own scratch copy; returns the running exec.

    With `retest` the previous session is kept and only its survivors are run again, against a fresh copy of the
    code and tests (after tests were added for them)."""
    base = WORK / f"{group.name}-{slot}"
    session = base / "session.sqlite"
    log = base / "cosmic-ray.log"
    bindir = Path(sys.executable).parent
    if retest:
        if not session.exists():
            raise SystemExit(f"[{group.name}] --retest: no previous session at {session}; run without --retest first")
        repo = scratch_copy(base)
        config = write_config(repo, group, modules, exclude)
        with sqlite3.connect(session) as db:
            db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
    else:
        if base.exists():
            shutil.rmtree(base)
        repo = scratch_copy(base)
        config = write_config(repo, group, modules, exclude)
        _run([str(bindir / "cosmic-ray"), "init", str(config), str(session), "--force"], repo, log)
        _run([str(bindir / "cr-filter-operators"), str(session), str(config)], repo, log)
    baseline = subprocess.run(
        test_command(group.tests).split(), cwd=repo, capture_output=True, text=True, timeout=900, check=False
    )
    if baseline.returncode != 0:
        tail = (baseline.stdout + baseline.stderr)[-3000:]
        raise SystemExit(f"[{group.name}] the tests fail on the unmutated code; fix them first:\n{tail}")
    out = log.open("a", encoding="utf-8")
    return subprocess.Popen(
        [str(bindir / "cosmic-ray"), "exec", str(config), str(session)], cwd=repo, stdout=out, stderr=out
    )


def dump(session: Path) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    bindir = Path(sys.executable).parent
    text = subprocess.run(
        [str(bindir / "cosmic-ray"), "dump", str(session)], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in text.splitlines():
        if line.strip():
            item, result = json.loads(line)
            rows.append((item, result))
    return rows


ANNOTATION_REASON = (
    "the mutant changes a type annotation of a module with `from __future__ import annotations`: annotations there "
    "are strings that are never evaluated (pydantic evaluates its models' and would fail loudly, so those are killed)"
)


@functools.cache
def _annotation_spans(path: Path) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """(start, end) positions of every annotation, when the module postpones their evaluation; else none."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return ()
    postponed = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    if not postponed:
        return ()
    spans = []
    for node in ast.walk(tree):
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            annotations += [a.annotation for a in every if a is not None]
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for a in annotations:
            if a is not None and a.end_lineno is not None and a.end_col_offset is not None:
                spans.append(((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)))
    return tuple(spans)


def in_annotation(path: Path, position: tuple[int, int]) -> bool:
    """Whether a mutation at `position` (line, column) lies inside a never-evaluated annotation."""
    return any(start <= position < end for start, end in _annotation_spans(path))


def score(
    rows: list[tuple[dict[str, Any], dict[str, Any] | None]],
    equivalents: list[Equivalent],
    source_root: Path = ROOT,
) -> dict[str, ModuleScore]:
    modules: dict[str, ModuleScore] = {}
    for item, result in rows:
        mutation = item["mutations"][0]
        module = mutation["module_path"]
        stats = modules.setdefault(module, ModuleScore(module))
        if result is None or result.get("worker_outcome") == "skipped":
            continue  # filtered operator, or not run
        stats.mutants += 1
        outcome = result.get("test_outcome")
        if outcome == "killed":
            stats.killed += 1
        elif outcome == "incompetent":
            stats.incompetent += 1
        else:
            survivor = Survivor(module, mutation["operator_name"], mutation["start_pos"][0], result.get("diff") or "")
            survivor.equivalent = next((e for e in equivalents if e.matches(survivor)), None)
            if survivor.equivalent is None and in_annotation(source_root / module, tuple(mutation["start_pos"])):
                survivor.equivalent = Equivalent(module, "", "", ANNOTATION_REASON)
            if survivor.equivalent is not None:
                stats.equivalent += 1
            else:
                stats.survived += 1
            stats.survivors.append(survivor)
    return modules


def report(group: Group, scores: dict[str, ModuleScore], seconds: float) -> str:
    lines = [f"== {group.name}: {group.description} ({seconds / 60:.1f} min)"]
    header = f"{'module':45} {'mutants':>7} {'killed':>6} {'survived':>8} {'equiv':>5} {'incomp':>6} {'score':>6}"
    lines.append(header)
    for module in sorted(scores):
        s = scores[module]
        lines.append(
            f"{module:45} {s.mutants:7d} {s.killed:6d} {s.survived:8d} {s.equivalent:5d} "
            f"{s.incompetent:6d} {s.score:5.1f}%"
        )
    for module in sorted(scores):
        for survivor in scores[module].survivors:
            if survivor.equivalent is not None:
                why = survivor.equivalent.reason
                lines.append(f"-- equivalent {module}:{survivor.line} {survivor.operator}: {why}")
    for module in sorted(scores):
        for survivor in scores[module].survivors:
            if survivor.equivalent is None:
                lines.append(f"-- SURVIVED {module}:{survivor.line} {survivor.operator}")
                lines.append(_short_diff(survivor.diff))
    return "\n".join(lines)


def _short_diff(diff: str) -> str:
    keep = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return "\n".join("    " + line for line in keep if line.startswith(("-", "+", "@@")))


def partitions(modules: tuple[str, ...], jobs: int) -> list[list[str]]:
    """Split the modules into `jobs` sets of about equal size (by lines), each run in its own copy."""
    buckets: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(modules))))]
    sizes = [0] * len(buckets)
    for module in sorted(modules, key=lambda m: -len((ROOT / m).read_text(encoding="utf-8").splitlines())):
        slot = sizes.index(min(sizes))
        buckets[slot].append(module)
        sizes[slot] += len((ROOT / module).read_text(encoding="utf-8").splitlines())
    return [b for b in buckets if b]


def run_group(
    group: Group,
    exclude: list[str],
    equivalents: list[Equivalent],
    jobs: int,
    retest: bool = False,
    report_only: bool = False,
) -> dict[str, ModuleScore]:
    started = time.monotonic()
    parts = partitions(group.modules, jobs)
    procs: list[tuple[int, subprocess.Popen[bytes] | None]]
    if report_only:
        procs = [(slot, None) for slot in range(len(parts))]
    else:
        procs = [(slot, run_partition(group, part, exclude, slot, retest)) for slot, part in enumerate(parts)]
    scores: dict[str, ModuleScore] = {}
    for slot, proc in procs:
        if proc is not None and proc.wait() != 0:
            log = WORK / f"{group.name}-{slot}" / "cosmic-ray.log"
            raise SystemExit(f"[{group.name}] cosmic-ray exec failed; see {log}")
        base = WORK / f"{group.name}-{slot}"
        scores.update(score(dump(base / "session.sqlite"), equivalents, base / ROOT.name))
    text = report(group, scores, time.monotonic() - started)
    print(text, flush=True)
    summary = {
        m: {k: getattr(s, k) for k in ("mutants", "killed", "survived", "equivalent", "incompetent")}
        | {"score": round(s.score, 1)}
        for m, s in scores.items()
    }
    (WORK / f"{group.name}.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (WORK / f"{group.name}.txt").write_text(text + "\n", encoding="utf-8")
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation.run", description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default="", help="comma-separated group names (default: every group)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATION_JOBS", "1")))
    parser.add_argument("--fail-under", type=float, default=0.0, help="exit 1 when a module scores below this")
    parser.add_argument("--list", action="store_true", help="list the groups and exit")
    parser.add_argument("--retest", action="store_true", help="re-run only the survivors of the last run")
    parser.add_argument("--report", action="store_true", help="only print the report of the last run")
    args = parser.parse_args(argv)
    groups, exclude = load_groups()
    if args.list:
        for g in groups.values():
            print(f"{g.name:12} {g.description}\n{'':12} {', '.join(g.modules)}")
        return 0
    names = [n.strip() for n in args.modules.split(",") if n.strip()] or list(groups)
    unknown = [n for n in names if n not in groups]
    if unknown:
        print(f"MODULES: unknown group(s) {', '.join(unknown)}; expected some of {', '.join(groups)}", file=sys.stderr)
        return 2
    for name in names:
        for test in groups[name].tests:
            if not (ROOT / test).exists():
                print(f"mutation/groups.toml: group {name!r} names a missing test file {test}", file=sys.stderr)
                return 2
    equivalents = load_equivalents()
    WORK.mkdir(exist_ok=True)
    below = []
    for name in names:
        for module, s in run_group(groups[name], exclude, equivalents, args.jobs, args.retest, args.report).items():
            if s.score < args.fail_under:
                below.append(f"{module} {s.score:.1f}%")
    if below:
        print(f"below {args.fail_under:.0f}%: " + "; ".join(below), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
