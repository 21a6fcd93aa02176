"""`nanobench submit RUN_DIR [--submissions DIR] [--label TEXT] [--availability KIND] [--notes TEXT]`.

Verifies a signed bundle and files it under ``<submissions>/<preset>/<run_id>/`` (without
``artifacts/``), with the label/availability/notes in an unsigned ``submission.json`` beside it.
Forecasts, unsigned or tampered bundles and replays of an existing run_id are refused (exit 1).
"""

from __future__ import annotations

import argparse
import sys

from bench.submission import AVAILABILITY, SubmissionError, submit_bundle
from bench.verify import load_pins


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="verify a run bundle and file it under submissions/<preset>/<run_id>/",
        description="Verify a signed run bundle and copy it (without artifacts/) into the submissions tree.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the signed run (bundle) directory")
    parser.add_argument("--submissions", default="submissions", metavar="DIR", help="submissions root (default: submissions/)")
    parser.add_argument("--label", help='hardware label shown on the leaderboard, e.g. "8xH100 SXM (lambda)"')
    parser.add_argument("--availability", choices=AVAILABILITY, help="how others can get this hardware")
    parser.add_argument("--notes", help="free-text notes shown on the submission page")
    parser.add_argument("--pins", metavar="FILE", help="also require the workload hashes in this pins file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        pins = load_pins(args.pins) if args.pins else None
        dest = submit_bundle(
            args.run_dir,
            args.submissions,
            label=args.label,
            availability=args.availability,
            notes=args.notes,
            pins=pins,
        )
    except (SubmissionError, OSError, ValueError) as exc:
        print(f"submission refused: {exc}", file=sys.stderr)
        return 1
    print(f"submitted: {dest}")
    return 0
