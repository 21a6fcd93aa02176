"""`nanobench serve --run-dir RUN [--host 127.0.0.1] [--port 8000] [--workers N]`: the chat web UI and API."""

from __future__ import annotations

import argparse
import sys

from bench.commands.numbers import bounded_int
from nanochat_core.chat_cli import CHAT_SOURCES

DESCRIPTION = (
    "Serve a run's chat checkpoint over HTTP: a web UI at / and a streaming API at POST /chat/completions. "
    "Binds 127.0.0.1 (this machine only) unless --host says otherwise; answers only requests addressed to "
    "its own host name and origin (no cross-site use, no CORS); queues at most --max-queue requests beyond "
    "one per worker and --per-client per client address (429 beyond); does not log prompts or replies "
    "unless --log-conversations."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve a run's checkpoint: chat web UI at / and a streaming API",
                                   description=DESCRIPTION)
    parser.add_argument("--run-dir", required=True, help="the run directory (its artifacts/ holds the checkpoints)")
    parser.add_argument("--source", choices=CHAT_SOURCES, default="sft", help="which checkpoint (default: sft)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=bounded_int("--port", 1, 65535), default=8000, help="TCP port (default 8000)")
    parser.add_argument("--workers", type=bounded_int("--workers", 0, 64), default=0,
                        help="model replicas (default: one per GPU, else one on the CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also answer requests addressed to this host name (e.g. a LAN name); repeatable")
    parser.add_argument("--max-queue", type=bounded_int("--max-queue", 0, 1000), default=8,
                        help="requests that may wait beyond one per worker before 429 (default 8)")
    parser.add_argument("--per-client", type=bounded_int("--per-client", 1, 100), default=2,
                        help="requests one client address may have running or waiting (default 2)")
    parser.add_argument("--log-conversations", action="store_true",
                        help="log the start of each prompt and reply (off by default: conversations stay private)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nanochat_core.chat_web import serve

    try:
        serve(args.run_dir, source=args.source, host=args.host, port=args.port, workers=args.workers, device=args.device,
              allow_hosts=tuple(args.allow_host), max_queue=args.max_queue, per_client=args.per_client,
              log_conversations=args.log_conversations)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
