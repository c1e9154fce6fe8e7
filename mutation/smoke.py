"""`make mutation-smoke`: the CI mutation smoke. Each mutant of mutation/smoke.toml is applied alone to a scratch
copy of the project and its tests must then fail; it runs in a few minutes, so CI can afford it on every change.

A mutant is anchored by an exact fragment of its original line, not by a line number, so it keeps working when code
moves; when the fragment is gone (or no longer unique) the smoke fails naming the mutant, to be re-anchored.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mutation.run import ROOT, WORK, scratch_copy

SMOKE_FILE = Path(__file__).resolve().parent / "smoke.toml"
TIMEOUT = 300
# pytest exit codes: 1 tests failed, 2 interrupted (a collection error: the mutant broke an import).
KILLED_CODES = {1, 2}


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    why: str
    known_gap: str | None = None


def load_mutants(path: Path = SMOKE_FILE) -> list[Mutant]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    mutants = []
    seen: set[str] = set()
    for index, raw in enumerate(data.get("mutant", [])):
        missing = [k for k in ("id", "file", "original", "replacement", "tests", "why") if not raw.get(k)]
        if missing:
            raise SystemExit(f"{path.name}: mutant[{index}] lacks {', '.join(missing)}")
        if raw["id"] in seen:
            raise SystemExit(f"{path.name}: mutant id {raw['id']!r} is used twice")
        if raw["original"] == raw["replacement"]:
            raise SystemExit(f"{path.name}: mutant {raw['id']!r} changes nothing")
        seen.add(raw["id"])
        mutants.append(
            Mutant(
                raw["id"],
                raw["file"],
                raw["original"],
                raw["replacement"],
                tuple(raw["tests"]),
                raw["why"],
                raw.get("known_gap"),
            )
        )
    return mutants


def anchor_problems(mutants: list[Mutant], root: Path = ROOT) -> list[str]:
    """Every mutant whose original fragment is not found exactly once in its file (the code moved on)."""
    problems = []
    for m in mutants:
        path = root / m.file
        if not path.exists():
            problems.append(f"{m.id}: {m.file} does not exist any more; re-anchor this mutant")
            continue
        count = path.read_text(encoding="utf-8").count(m.original)
        if count != 1:
            what = "is not found" if count == 0 else f"occurs {count} times"
            problems.append(f"{m.id}: in {m.file} the original fragment {what}: {m.original!r}; re-anchor it")
        for test in m.tests:
            if not (root / test.split("::", 1)[0]).exists():
                problems.append(f"{m.id}: test file {test} does not exist")
    return problems


def pytest_command(tests: tuple[str, ...] | list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "--no-header", "-p", "no:cacheprovider", *tests]


def run_tests(repo: Path, tests: tuple[str, ...] | list[str]) -> tuple[int, str]:
    try:
        result = subprocess.run(
            pytest_command(tests), cwd=repo, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return -1, "timeout"  # a mutant that hangs the tests counts as killed
    return result.returncode, result.stdout + result.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutant ids")
    parser.add_argument("--check-anchors", action="store_true", help="only check that every anchor applies")
    args = parser.parse_args(argv)
    mutants = load_mutants()
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = wanted - {m.id for m in mutants}
        if unknown:
            print(f"unknown mutant id(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.id in wanted]
    problems = anchor_problems(mutants)
    if problems:
        print("mutation smoke: these mutants no longer apply to the code:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if args.check_anchors:
        print(f"mutation smoke: all {len(mutants)} anchors apply")
        return 0

    started = time.monotonic()
    WORK.mkdir(exist_ok=True)
    repo = scratch_copy(WORK / "smoke")
    every_test = sorted({t for m in mutants for t in m.tests})
    code, output = run_tests(repo, every_test)
    if code != 0:
        print(f"mutation smoke: the tests fail on the unmutated code:\n{output[-3000:]}", file=sys.stderr)
        return 1
    print(f"mutation smoke: baseline passed ({time.monotonic() - started:.0f}s)", flush=True)

    failures = []
    for m in mutants:
        path = repo / m.file
        pristine = path.read_text(encoding="utf-8")
        path.write_text(pristine.replace(m.original, m.replacement, 1), encoding="utf-8")
        t0 = time.monotonic()
        try:
            code, output = run_tests(repo, m.tests)
        finally:
            path.write_text(pristine, encoding="utf-8")
        seconds = time.monotonic() - t0
        killed = code in KILLED_CODES or code == -1
        if m.known_gap and not killed:
            verdict = f"known gap ({m.known_gap})"
        elif m.known_gap:
            verdict = "KILLED, but marked known_gap: remove the known_gap line in mutation/smoke.toml"
            failures.append(m.id)
        elif killed:
            verdict = "killed" if code != -1 else "killed (timeout)"
        elif code == 0:
            verdict = f"SURVIVED: {m.why}"
            failures.append(m.id)
        else:
            verdict = f"BROKEN: pytest exited {code}:\n{output[-1500:]}"
            failures.append(m.id)
        print(f"  {m.id:42} {seconds:5.1f}s  {verdict}", flush=True)

    total = time.monotonic() - started
    print(f"mutation smoke: {len(mutants)} mutants, {len(failures)} failing, {total / 60:.1f} min")
    if failures:
        print(f"mutation smoke FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
