"""`nanobench chat --run-dir RUN [--source sft|mid|rl|base] [-p PROMPT]`: talk to a trained checkpoint in the terminal."""

from __future__ import annotations

import argparse
import sys

from nanochat_core.chat_cli import CHAT_SOURCES, DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_K, run_chat


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="chat with a run's checkpoint in the terminal (streaming)",
        description="Chat with the model a run trained, in the terminal: replies stream as they are sampled. "
                    "Reads prompts from a pipe too (one per line). A smoke run's model is tiny and answers nonsense.",
    )
    parser.add_argument("--run-dir", required=True, help="the run directory (its artifacts/ holds the checkpoints)")
    parser.add_argument("--source", choices=CHAT_SOURCES, default="sft", help="which checkpoint (default: sft)")
    parser.add_argument("-p", "--prompt", help="answer this one prompt and exit")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help=f"sampling temperature, 0 = greedy (default {DEFAULT_TEMPERATURE})")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help=f"sample among the k likeliest tokens (default {DEFAULT_TOP_K})")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="tokens per reply")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda")
    parser.add_argument("--seed", type=int, default=None, help="make the sampling reproducible")
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
