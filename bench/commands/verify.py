"""`nanobench verify RUN_DIR [--pins FILE] [--trusted-keys FILE] [--json]`: check a result bundle.

Exit status 0 only if every check holds; otherwise 1, with the first failure named.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.key_registry import KeyRegistryError, load_registry
from bench.safe_read import show
from bench.verify import load_pins, verify_bundle


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check a run bundle: file hashes, signature, schema, recomputed costs, workload pins",
        description="Verify a signed run bundle offline. Exit 0 only if every check holds.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run (bundle) directory")
    parser.add_argument("--pins", metavar="FILE", help="JSON (or .toml) file of expected workload hashes")
    parser.add_argument(
        "--trusted-keys",
        metavar="FILE",
        help="key registry directory (e.g. submissions/keys), a .pub file, or a file of trusted public keys (hex) "
             "or fingerprints, one per line ('#' comments allowed)",
    )
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--no-preset-pins", action="store_true",
                        help="do not check against the pins shipped for the bundle's preset (bench/pins/<preset>.json)")
    parser.set_defaults(func=run)


def _out(text: str, stream=None) -> None:
    """Print untrusted text without ever failing on an unencodable character."""
    stream = stream or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")


def run(args: argparse.Namespace) -> int:
    try:
        pins = load_pins(args.pins) if args.pins else None
        trusted = load_registry(args.trusted_keys) if args.trusted_keys else None
    except (OSError, ValueError, KeyRegistryError, UnicodeError) as exc:
        _out(f"FAIL [input] {show(str(exc))[1:-1]}", sys.stderr)
        return 1
    if pins is None and not args.no_preset_pins:
        pins = _preset_pins(args.run_dir)
    report = verify_bundle(args.run_dir, pins=pins, trusted_keys=trusted)
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2, ensure_ascii=True))
    else:
        for check in report.checks:
            status = "skip" if check.skipped else ("ok" if check.ok else "FAIL")
            _out(f"  {status:4} {check.name}: {check.message}")
        if report.signer:
            _out(f"  signer: {report.signer}")
        _out(report.message, sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def _preset_pins(run_dir: str) -> dict | None:
    """The pins nanobench ships for the bundle's preset, if any (read from its result.json)."""
    from bench.workload_identity import load_preset_pins

    from bench.safe_read import UnsafeFile, load_json
    from bench.submission import safe_name

    try:
        preset = load_json(Path(run_dir) / "result.json").get("preset")
    except (UnsafeFile, OSError, ValueError, AttributeError):
        return None  # the schema check reports an unreadable result.json
    try:
        return load_preset_pins(preset) if safe_name(preset) else None
    except (OSError, ValueError):
        return None
