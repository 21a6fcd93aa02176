"""`nanobench selftest --gpu`: the prepared check of a GPU machine (see bench/selftest.py).

    nanobench selftest --gpu --out gpu_check.json            # on the GPU machine, under 10 minutes
    nanobench selftest --gpu --dry-run --out /tmp/check.json  # the same code on a CPU, tiny presets
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.commands.numbers import bounded_float, bounded_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("selftest", help="prepared hardware checks (--gpu: smoke + d20 speedrun-batch steps)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", action="store_true", help="the GPU check: smoke end to end, d20 steps, determinism, energy")
    p.add_argument("--out", default="gpu_check.json", help="where the JSON of figures goes (default: gpu_check.json)")
    p.add_argument("--device", default=None, help="device for the check (default: cuda; cpu with --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="run the same steps on the CPU with tiny presets")
    p.add_argument("--steps", type=bounded_int("--steps", 1, 100_000), default=30, help="d20 optimizer steps (default 30)")
    p.add_argument("--vocab", type=bounded_int("--vocab", 265, 2**20), default=16_384, help="tokenizer size for d20 on the shipped corpus (default 16384)")
    p.add_argument("--skip-smoke", action="store_true", help="only the d20 part")
    p.add_argument("--probe-d20", action="store_true", help="also run the determinism probe on d20 (adds minutes)")
    p.add_argument("--timeout", type=bounded_float("--timeout", 0, 86_400, lo_open=True), default=540.0, help="overall time budget in seconds (default 540)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.gpu:
        print("error: say which check: --gpu", file=sys.stderr)
        return 2
    if args.steps < 1 or args.vocab < 256:
        print("error: --steps must be >= 1 and --vocab >= 256", file=sys.stderr)
        return 2
    from bench.devices import DeviceUnavailable, resolve
    from bench.selftest import run_check

    device = args.device or ("cpu" if args.dry_run else "cuda")
    try:
        choice = resolve(device)
    except DeviceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(f"selftest: device {choice.kind} ({choice.reason}); figures -> {out}", flush=True)
    report = run_check(out, device=choice.kind, dry_run=args.dry_run, vocab=args.vocab, steps=args.steps,
                       skip_smoke=args.skip_smoke, probe_d20=args.probe_d20, timeout_s=args.timeout)
    d20 = report.get("d20", {})
    print(json.dumps({k: d20.get(k) for k in ("tok_per_s", "mfu_percent", "peak_memory_bytes", "device_batch_size", "compile_seconds")}))
    for problem in report["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"selftest: {'ok' if report['ok'] else 'FAILED'} in {report['wall_seconds']:.0f} s; {out}")
    return 0 if report["ok"] else 1
