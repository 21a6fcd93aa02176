"""`nanobench leaderboard build [--submissions DIR] [--out DIR] [--pins FILE]`: write the static site.

Every submission is verified; failures are listed as excluded (with the reason) and never stop the
build. The output works from ``file://`` and any static host.
"""

from __future__ import annotations

import argparse
import sys

from bench.verify import load_pins


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("leaderboard", help="build the static leaderboard site from submissions/")
    actions = parser.add_subparsers(dest="leaderboard_command", metavar="ACTION")
    build = actions.add_parser("build", help="verify every submission and write the static site")
    build.add_argument("--submissions", default="submissions", metavar="DIR", help="submissions root (default: submissions/)")
    build.add_argument("--out", default="leaderboard/site", metavar="DIR", help="output directory (default: leaderboard/site)")
    build.add_argument("--pins", metavar="FILE", help="pinned workload spec (JSON or TOML); without it the badge says 'not checked'")
    build.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from bench.leaderboard.build import (  # matplotlib/jinja only when building
        SiteError,
        build_site,
    )

    try:
        pins = load_pins(args.pins) if args.pins else None
    except (OSError, ValueError) as exc:
        print(f"error: cannot read pins: {exc}", file=sys.stderr)
        return 1
    try:
        report = build_site(args.submissions, args.out, pins=pins)
    except (SiteError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    boards = ", ".join(f"{b.preset} ({len(b.entries)})" for b in report.boards) or "none"
    print(f"leaderboard: {report.rows} submission(s) on boards: {boards}")
    for item in report.excluded:
        print(f"  excluded {item.submission}: {item.reason}", file=sys.stderr)
    print(f"site: {report.out_dir / 'index.html'}")
    return 0
