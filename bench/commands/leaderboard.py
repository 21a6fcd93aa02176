"""`nanobench leaderboard build [--submissions DIR] [--out DIR] [--pins FILE]`: write the static site.

Every submission is verified; failures are listed as excluded (with the reason) and never stop the
build. The output works from ``file://`` and any static host.
"""

from __future__ import annotations

import argparse
import sys

from bench.verify import load_pins


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("leaderboard", help="build the static leaderboard site from submissions/",
                                   description="Build the static leaderboard site (HTML, JSON, CSV) from the verified submissions.")
    actions = parser.add_subparsers(dest="leaderboard_command", metavar="ACTION")
    build = actions.add_parser("build", help="verify every submission and write the static site",
                                description="Verify every submission and write the static site; failing ones are listed as excluded.")
    build.add_argument("--submissions", default="submissions", metavar="DIR", help="submissions root (default: submissions/)")
    build.add_argument("--out", default="leaderboard/site", metavar="DIR", help="output directory (default: leaderboard/site)")
    build.add_argument("--pins", metavar="FILE", help="pinned workload spec (JSON or TOML) for every preset (default: the shipped pins)")
    build.add_argument("--trusted-keys", metavar="PATH",
                       help="key registry directory or .pub file/key list (default: <submissions>/keys); rows from other keys are not ranked")
    build.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from bench.leaderboard.build import (  # matplotlib/jinja only when building
        SiteError,
        build_site,
    )

    from bench.key_registry import KeyRegistryError, load_registry

    try:
        pins = load_pins(args.pins) if args.pins else None
    except (OSError, ValueError) as exc:
        _out(f"error: cannot read pins: {exc}", sys.stderr)
        return 1
    try:
        registry = load_registry(args.trusted_keys) if args.trusted_keys else None
    except KeyRegistryError as exc:
        _out(f"error: cannot read trusted keys: {exc}", sys.stderr)
        return 1
    try:
        report = build_site(args.submissions, args.out, pins=pins, registry=registry)
    except (SiteError, OSError) as exc:
        _out(f"error: {exc}", sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the build never ends in a traceback
        _out(f"error: the build failed: {type(exc).__name__}: {exc}", sys.stderr)
        return 1
    boards = ", ".join(f"{b.preset} ({len(b.entries)})" for b in report.boards) or "none"
    _out(f"leaderboard: {report.rows} submission(s) on boards: {boards}")
    for item in report.excluded:
        _out(f"  excluded {item.submission}: {item.reason}", sys.stderr)
    _out(f"site: {report.out_dir / 'index.html'}")
    return 0


def _out(text: str, stream=None) -> None:
    """Print untrusted text without ever failing on an unencodable character."""
    stream = stream or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(str(text).encode(encoding, "backslashreplace").decode(encoding) + "\n")
