"""`nanobench submit RUN_DIR [--submissions DIR] [--label TEXT] [--availability KIND] [--notes TEXT]`.

Verifies a signed bundle (against the pins shipped for its preset unless ``--pins FILE`` or
``--no-preset-pins``) and files it under ``<submissions>/<preset>/<run_id>/`` (without
``artifacts/``), with the label/availability/notes in an unsigned ``submission.json`` beside it.
Forecasts, unsigned or tampered bundles, replays of an existing run_id and copies of an already
filed run (same run nonce) are refused (exit 1). With ``--trusted-keys`` the signer must be in that
registry/list; without it the signer is looked up in ``<submissions>/keys`` and the command says
when the board will not rank the submission (and why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.key_registry import KeyRegistryError, load_registry
from bench.safe_read import show
from bench.submission import AVAILABILITY, KEYS_DIRNAME, SubmissionError, submit_bundle
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
    parser.add_argument("--pins", metavar="FILE", help="require the workload hashes in this pins file (default: the shipped pins)")
    parser.add_argument("--no-preset-pins", action="store_true", help="do not check the pins shipped for the bundle's preset")
    parser.add_argument("--replace-meta", action="store_true",
                        help="when the run is already filed, replace its label/availability/notes (refused otherwise)")
    parser.add_argument("--trusted-keys", metavar="PATH",
                        help="key registry directory, a .pub file or a key list; the signer must be in it")
    parser.set_defaults(func=run)


def _safe_print(text: str, stream) -> None:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")


def run(args: argparse.Namespace) -> int:
    try:
        pins = load_pins(args.pins) if args.pins else (False if args.no_preset_pins else None)
        trusted = load_registry(args.trusted_keys) if args.trusted_keys else None
        dest = submit_bundle(
            args.run_dir,
            args.submissions,
            label=args.label,
            availability=args.availability,
            notes=args.notes,
            pins=pins,
            trusted_keys=trusted,
            replace_meta=args.replace_meta,
        )
    except (SubmissionError, KeyRegistryError, OSError, ValueError) as exc:
        _safe_print(f"submission refused: {exc}", sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - submit never ends in a traceback
        _safe_print(f"submission refused: unexpected {type(exc).__name__}: {show(str(exc))[:300]}", sys.stderr)
        return 1
    _safe_print(f"submitted: {dest}", sys.stdout)
    _warn_unranked(dest, Path(args.submissions) / KEYS_DIRNAME, pins)
    return 0


def _warn_unranked(dest: Path, keys: Path, pins) -> None:
    """Say, before the board does, which ranking rules the filed bundle breaks."""
    from bench.leaderboard.model import load_one

    try:
        registry = load_registry(keys)
        loaded = load_one(dest, pins if isinstance(pins, dict) else None, "x", registry)
    except Exception:  # noqa: BLE001 - advice only
        return
    reason = getattr(loaded, "reason", None)
    if reason:
        _safe_print(f"note: the leaderboard will list this submission as excluded: {reason}", sys.stderr)
