"""Parse every .bicep file under a folder with pycep and print {relative path: parsed JSON}.

Run by the tests with .venv-infra's Python (pycep lives there, next to checkov, not in the app's .venv).
Exit 1 naming the file when one does not parse.
"""

import json
import sys
from pathlib import Path

from pycep import BicepParser


def main() -> int:
    root = Path(sys.argv[1])
    parser = BicepParser()
    parsed = {}
    for path in sorted(root.rglob("*.bicep")):
        try:
            parsed[path.relative_to(root).as_posix()] = parser.parse(file_path=path)
        except Exception as exc:  # pycep raises lark errors of several kinds
            print(f"{path}: does not parse: {exc}", file=sys.stderr)
            return 1
    json.dump(parsed, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
