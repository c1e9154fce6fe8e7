"""`python -m demo [--out DIR]`: run the whole gate locally and print the timeline."""

import argparse
import sys
from pathlib import Path

from demo.story import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="where to write what the demo shows")
    sys.exit(run(parser.parse_args().out))
