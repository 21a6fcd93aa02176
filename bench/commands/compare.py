"""`nanobench compare A B [C ...] [--format table|csv|json|markdown]`: runs side by side, ratios against A.

Each argument is a run directory, a submission directory, a result.json-shaped file (a forecast,
for instance) or a submission id ``<preset>/<run_id>`` looked up under ``--submissions``.
"""

from __future__ import annotations

import argparse
import sys

from bench.compare import FORMATS, CompareError, compare


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare runs, submissions or forecasts side by side (ratios against the first)",
        description="Compare the hardware, cost, time, per-phase figures, throughput and scores of two or more results. "
                    "table/markdown give readable numbers and ratios in words against the first run, marked better or "
                    "worse (\"2.30x faster (better)\", \"0.40x the cost (better)\"); csv/json keep raw numbers. "
                    "Metrics no input recorded are listed once instead of as rows of n/a.",
    )
    parser.add_argument("refs", nargs="+", metavar="RUN", help="run dir, submission dir, result file or <preset>/<run_id>")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--submissions", default="submissions", metavar="DIR", help="where submission ids are looked up")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.refs) < 2:
        print("compare needs at least two runs", file=sys.stderr)
        return 2
    try:
        text = compare(args.refs, args.submissions, args.format)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0
