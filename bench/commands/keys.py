"""`nanobench keys show|create`: the signing key's public half, fingerprint and location (never the private key).

``show`` only reads: with no key yet it says where one will be made and exits 1, creating nothing.
``create`` makes the key now (the first ``nanobench run`` would otherwise make it when it signs).
"""

from __future__ import annotations

import argparse
import sys

from bench import signing


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="show (or create) the Ed25519 key that signs your result bundles",
        description="Show or create the Ed25519 key that signs your result bundles. The private key never leaves its file.",
    )
    keys_sub = parser.add_subparsers(dest="keys_command", metavar="ACTION")
    key_dir_help = f"key directory (default: ${signing.KEY_DIR_ENV}, else the user config dir)"
    show = keys_sub.add_parser("show", help="print the public key, its fingerprint and the key file path (creates nothing)",
                               description="Print the public key, its fingerprint and the key file path. Creates nothing.")
    show.add_argument("--key-dir", help=key_dir_help)
    show.set_defaults(func=run)
    create = keys_sub.add_parser("create", help="create the signing key now (no-op when it exists), then show it",
                                 description="Create the signing key (0600) if there is none, then show it.")
    create.add_argument("--key-dir", help=key_dir_help)
    create.set_defaults(func=run_create)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _show(args: argparse.Namespace, note: str = "") -> int:
    path = signing.key_path(args.key_dir)
    try:
        public = signing.public_key_hex(args.key_dir)
    except (signing.SigningKeyError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"key file:    {path}{note}")
    print(f"algorithm:   {signing.ALGORITHM}")
    print(f"public key:  {public}")
    print(f"fingerprint: {signing.fingerprint_of(public)}")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        path = signing.key_path(args.key_dir)
        exists = path.exists()
    except (signing.SigningKeyError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not exists:
        print(f"no signing key yet (it would be {path}); nothing was created.\n"
              "It is made when a run is first signed, or now with: nanobench keys create", file=sys.stderr)
        return 1
    return _show(args)


def run_create(args: argparse.Namespace) -> int:
    try:
        existed = signing.key_path(args.key_dir).exists()
    except (signing.SigningKeyError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return _show(args, "" if existed else "  (created now)")
