"""`python -m bench [NAME ...]`: run every benchmark module (bench/bench_*.py) or the named ones.

Each module exposes `run() -> list[bench.common.Ratio]`; figures are printed as ratios against a baseline
measured in the same run. Exit code 1 when a target is missed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in argv] or names
    missed = False
    for name in wanted:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name[len('bench_') :]}", flush=True)
        for result in module.run():
            print("  " + result.line(), flush=True)
            missed |= result.met() is False
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
