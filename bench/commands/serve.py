"""`nanobench serve --run-dir RUN [--host 127.0.0.1] [--port 8000] [--workers N]`: the chat web UI and API."""

from __future__ import annotations

import argparse
import sys

from nanochat_core.chat_cli import CHAT_SOURCES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a run's checkpoint: chat web UI at / and a streaming API",
        description="Serve the model a run trained: a chat web page at / and a streaming HTTP API, on this machine "
                    "only unless --host says otherwise. A smoke run's model is tiny and answers nonsense.",
    )
    parser.add_argument("--run-dir", required=True, help="the run directory (its artifacts/ holds the checkpoints)")
    parser.add_argument("--source", choices=CHAT_SOURCES, default="sft", help="which checkpoint (default: sft)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--workers", type=int, default=0, help="model replicas (default: one per GPU, else one on the CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nanochat_core.chat_web import serve

    try:
        serve(args.run_dir, source=args.source, host=args.host, port=args.port, workers=args.workers, device=args.device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
