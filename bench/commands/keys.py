"""`nanobench keys show`: the signing key's public half, fingerprint and location (never the private key)."""

from __future__ import annotations

import argparse
import sys

from bench import signing


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="show the Ed25519 key that signs your result bundles")
    keys_sub = parser.add_subparsers(dest="keys_command", metavar="ACTION")
    show = keys_sub.add_parser("show", help="print the public key, its fingerprint and the key file path")
    show.add_argument("--key-dir", help=f"key directory (default: ${signing.KEY_DIR_ENV}, else the user config dir)")
    show.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    path = signing.key_path(args.key_dir)
    existed = path.exists()
    try:
        public = signing.public_key_hex(args.key_dir)
    except (signing.SigningKeyError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"key file:    {path}" + ("" if existed else "  (created now)"))
    print(f"algorithm:   {signing.ALGORITHM}")
    print(f"public key:  {public}")
    print(f"fingerprint: {signing.fingerprint_of(public)}")
    return 0
