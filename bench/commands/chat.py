"""`nanobench chat --run-dir RUN [--source sft|mid|rl|base] [-p PROMPT]`: talk to a trained checkpoint in the terminal."""

from __future__ import annotations

import argparse
import sys

from bench.commands.numbers import bounded_float, bounded_int
from nanochat_core.chat_cli import CHAT_SOURCES, DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_K, run_chat

DESCRIPTION = (
    "Chat with a run's checkpoint in the terminal, replies streamed as they are sampled. Calculator calls "
    "are shown as [calculator: ...] [= result]. Type 'clear' to start over, 'quit' to leave; lines piped "
    "on stdin are echoed after each 'User:' prompt. With -p, answer one prompt and exit."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="chat with a run's checkpoint in the terminal (streaming)",
                                   description=DESCRIPTION)
    parser.add_argument("--run-dir", required=True, help="the run directory (its artifacts/ holds the checkpoints)")
    parser.add_argument("--source", choices=CHAT_SOURCES, default="sft", help="which checkpoint (default: sft)")
    parser.add_argument("-p", "--prompt", help="answer this one prompt and exit")
    parser.add_argument("--temperature", type=bounded_float("--temperature", 0.0, 2.0), default=DEFAULT_TEMPERATURE,
                        help=f"sampling temperature, 0 to 2 (default {DEFAULT_TEMPERATURE}; 0 = greedy)")
    parser.add_argument("--top-k", type=bounded_int("--top-k", 1, 200), default=DEFAULT_TOP_K,
                        help=f"sample among the k most likely tokens, 1 to 200 (default {DEFAULT_TOP_K})")
    parser.add_argument("--max-tokens", type=bounded_int("--max-tokens", 1, 4096), default=DEFAULT_MAX_TOKENS,
                        help=f"tokens per reply, 1 to 4096 (default {DEFAULT_MAX_TOKENS})")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda")
    parser.add_argument("--seed", type=bounded_int("--seed", 0, 2**63 - 1), default=None,
                        help="make the sampling reproducible")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return run_chat(
            args.run_dir, source=args.source, prompt=args.prompt, temperature=args.temperature, top_k=args.top_k,
            max_tokens=args.max_tokens, device=args.device, seed=args.seed,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
