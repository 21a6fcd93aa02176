"""`nanobench eval core|chat --run-dir RUN`: score an existing run's checkpoint outside a benchmark run.

Runs the same stage code as the `base_eval` / `chat_eval` phases, with optional overrides, and writes
into `<run>/phases/<stage>/` (re-scoring replaces the CSV/JSON there; a signed bundle then no longer
verifies, by design: re-sign only by running the benchmark).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from nanochat_core.config import WorkloadConfig, from_dict
from nanochat_core.device import DeviceUnavailable
from bench.commands.numbers import bounded_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="run CORE or ChatCORE on a run's checkpoint", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=("core", "chat"), help="core: CORE on the base checkpoint; chat: ChatCORE on a chat checkpoint")
    p.add_argument("--run-dir", required=True, help="a run directory with artifacts/ (tokenizer, checkpoints)")
    p.add_argument("--max-per-task", type=bounded_int("--max-per-task", -1, 10_000_000, exclude=(0,)), default=None, help="CORE examples per task (-1 = all)")
    p.add_argument("--bundle", choices=("offline", "download"), default=None, help="CORE task data")
    p.add_argument("--max-problems", type=bounded_int("--max-problems", -1, 10_000_000, exclude=(0,)), default=None, help="ChatCORE problems per task (-1 = all)")
    p.add_argument("--source", choices=("mid", "sft", "rl"), default=None, help="chat checkpoint to score")
    p.add_argument("--device", default="auto", help="auto (a GPU when present, else CPU), cpu or cuda")
    p.add_argument("--cache-dir", default=None, help="where eval data is cached (default: the nanobench cache dir)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.config import load_config
    from nanochat_core.common import init_runtime
    from nanochat_core.observer import ListObserver

    run_dir = Path(args.run_dir)
    try:
        cfg: WorkloadConfig = from_dict(WorkloadConfig, json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {run_dir / 'config.json'}: {exc}", file=sys.stderr)
        return 2
    be, ce = cfg.base_eval, cfg.chat_eval
    if args.max_per_task is not None:
        be = dataclasses.replace(be, core_max_per_task=args.max_per_task)
    if args.bundle:
        be = dataclasses.replace(be, bundle=args.bundle)
    if args.max_problems is not None:
        ce = dataclasses.replace(ce, max_problems=args.max_problems)
    if args.source:
        ce = dataclasses.replace(ce, source=args.source)
    cfg = dataclasses.replace(cfg, base_eval=be, chat_eval=ce)
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else load_config().cache_dir
    try:
        rt = init_runtime(device=args.device, seed=cfg.seed, observer=ListObserver(), artifacts_dir=run_dir / "artifacts", cache_dir=cache)
    except DeviceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.which == "core":
        from nanochat_core.stages import base_eval as stage
    else:
        from nanochat_core.stages import chat_eval as stage
    result = stage.run(cfg, rt)
    keys = ("core", "core_label", "examples") if args.which == "core" else ("chatcore", "source", "examples", "chatcore_reason")
    print(json.dumps({k: result.get(k) for k in keys}, indent=2, default=str))
    return 0
