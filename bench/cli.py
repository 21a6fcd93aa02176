"""`nanobench` command line: a thin dispatcher over `bench.commands.*`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bench import __version__
from bench.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanobench",
        description="What does it cost, in dollars and minutes, to train a ChatGPT-like model on this hardware?",
    )
    parser.add_argument("--version", action="version", version=f"nanobench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"bench.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # matplotlib announces building its font cache on first use; that is not news for a benchmark user
    logging.getLogger("matplotlib").setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
