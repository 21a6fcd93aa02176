"""`nanobench estimate`: forecast a preset's minutes and dollars from a short calibration run here.

    nanobench estimate --preset smoke --hourly-rate 0.1
    nanobench estimate --preset speedrun --hourly-rate 24 --nproc 8 --assume-scaling 0.9 --out forecast.json
    nanobench estimate --preset speedrun --hardware 8xH100          # what-if, offline, no calibration run

The calibration runs the real stages (same code as `nanobench run`) for a few steps/examples in a
scratch run directory, then extrapolates to the preset's full length. The JSON it writes has
`"kind": "forecast"`: `nanobench submit` refuses it and `nanobench compare` marks it FORECAST.

With `--hardware COUNTxNAME` (8xH100, 1xA100, 4x4090, ...) nothing runs: the forecast is computed offline
from the workload's FLOPs per phase, the accelerator's peak (the MFU table) and an MFU taken from the
submissions on that accelerator, else a stated default with a band (bench/whatif.py). Its price is
--hourly-rate, else the reference price table (bench/reference_prices.toml).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.atomic import write_json_atomic
from bench.config import ConfigError, load_config
from bench.commands.pricing_args import default_nproc, pricing_from_args
from bench.devices import DEVICE_CHOICES
from bench.devices import resolve as resolve_device
from bench.commands.numbers import MAX_HOURLY_RATE_USD, MAX_PROCS, bounded_float, bounded_int
from bench.cost import PricingError
from bench.estimate import (
    DEFAULT_SCALING_EFFICIENCY,
    EVAL_CALIBRATION_EXAMPLES,
    SCALING_SOURCE,
    WARMUP_STEPS,
    EstimateOptions,
    estimate,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("estimate", help="forecast a preset's minutes and USD from a short calibration run",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="speedrun", help="preset from bench.toml (default: speedrun)")
    p.add_argument("--config", default=None, help="path to bench.toml (default: the one shipped with nanobench)")
    p.add_argument("--hourly-rate", type=bounded_float("--hourly-rate", 0, MAX_HOURLY_RATE_USD), default=None,
                   help="USD per hour for the whole machine (required, except with --hardware when the reference "
                        "price table lists the accelerator)")
    p.add_argument("--hardware", default=None, metavar="COUNTxNAME",
                   help="what-if forecast for named hardware (8xH100, 1xA100, 4x4090): offline, from FLOPs, peak and MFU")
    p.add_argument("--submissions-dir", default=None,
                   help="with --hardware: submissions whose measured MFU is used (default: the repository's submissions/)")
    p.add_argument("--price-source", default=None, help="where the hourly rate comes from (URL or text)")
    p.add_argument("--price-kind", choices=("on-demand", "spot", "owned"), default=None,
                   help="how the hourly rate is paid: on-demand (list price), spot (interruptible) or owned (amortised hardware + power); default: bench.toml [harness] price_kind")
    p.add_argument("--calibration-steps", type=bounded_int("--calibration-steps", 1, 100_000), default=20, help="training steps run per training stage (default 20)")
    p.add_argument("--calibration-examples", type=bounded_int("--calibration-examples", 1, 1_000_000), default=EVAL_CALIBRATION_EXAMPLES,
                   help=f"examples per eval task in the calibration (default {EVAL_CALIBRATION_EXAMPLES})")
    p.add_argument("--warmup-steps", type=bounded_int("--warmup-steps", 0, 100_000), default=WARMUP_STEPS, help=f"step times dropped as warm-up (default {WARMUP_STEPS})")
    p.add_argument("--out", default=None, help="write the forecast JSON (kind: forecast) here")
    p.add_argument("--nproc", type=bounded_int("--nproc", 1, MAX_PROCS), default=None, help="processes (GPUs) the forecast is for (default: visible GPUs, or 1)")
    p.add_argument("--assume-scaling", type=bounded_float("--assume-scaling", 0, 1, lo_open=True), default=DEFAULT_SCALING_EFFICIENCY,
                   help=f"data-parallel efficiency assumed for --nproc > 1 (default {DEFAULT_SCALING_EFFICIENCY}; {SCALING_SOURCE})")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto | cuda | rocm | mps | xpu | cpu")
    p.add_argument("--no-compile", action="store_true", help="calibrate without torch.compile (as `run --no-compile`)")
    p.add_argument("--cache-dir", default=None, help="download cache (default from bench.toml)")
    p.add_argument("--scratch-dir", default=None, help="calibration run directory (default: a temporary one, removed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.hardware:
        return run_whatif(args)
    try:
        cfg = load_config(args.config)
        preset = cfg.preset(args.preset)
        if args.hourly_rate is None:
            raise ValueError("--hourly-rate USD is required (the whole machine's price per hour); "
                             "or forecast named hardware offline with --hardware 8xH100")
        resolve_device(args.device)  # an absent device: one line (DeviceUnavailable is a ValueError)
        _check_nproc_here(args.nproc, args.device)
        pricing = pricing_from_args(args, cfg.harness)
        opts = EstimateOptions(
            calibration_steps=args.calibration_steps, eval_examples=args.calibration_examples, warmup=args.warmup_steps, nproc=default_nproc(args.nproc, args.device),
            efficiency=args.assume_scaling, device=args.device, compile=False if args.no_compile else None,
        )
        if not 0 < opts.efficiency <= 1:
            raise ValueError(f"--assume-scaling must be in (0, 1], got {opts.efficiency}")
    except (ConfigError, PricingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console()
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else cfg.cache_dir
    scratch = Path(args.scratch_dir) if args.scratch_dir else Path(tempfile.mkdtemp(prefix=f"nanobench-estimate-{preset.name}-"))
    try:
        doc = estimate(preset, pricing, scratch=scratch, cache_dir=cache_dir, opts=opts,
                       on_message=lambda m: console.print(m, highlight=False), keep_scratch=args.scratch_dir is not None)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    console.print(forecast_table(doc))
    for line in summary_lines(doc):
        console.print(line, highlight=False)
    if args.out:
        write_json_atomic(Path(args.out), doc)
        console.print(f"forecast written to {args.out} (kind: forecast; compare it with a run: nanobench compare {args.out} RUN_DIR)")
    ok = doc["triple"]["complete"]
    return 0 if ok else 3


def _m(seconds: float) -> str:
    return f"{seconds / 60:.2f}"


def forecast_table(doc: dict[str, Any]) -> Table:
    """One row per phase: minutes and USD, low / expected / high, and the status."""
    t = Table(title=f"FORECAST {doc['preset']} ({doc['scaling']['nproc']} process(es), ${doc['pricing']['hourly_rate_usd']}/h)")
    for col in ("phase", "counted", "min low", "min", "min high", "USD low", "USD", "USD high", "status"):
        t.add_column(col, justify="left" if col in ("phase", "status") else "right")
    for p in doc["phases"]:
        t.add_row(p["name"], "yes" if p["counted"] else "no", _m(p["seconds_low"]), _m(p["seconds"]), _m(p["seconds_high"]),
                  f"{p['usd_low']:.4f}", f"{p['usd']:.4f}", f"{p['usd_high']:.4f}", p["status"])
    tr = doc["triple"]
    t.add_row("[bold]total (counted)", "", f"{tr['minutes_low']:.2f}", f"[bold]{tr['minutes']:.2f}", f"{tr['minutes_high']:.2f}",
              f"{tr['usd_low']:.4f}", f"[bold]{tr['usd']:.4f}", f"{tr['usd_high']:.4f}", "ok" if tr["complete"] else "INCOMPLETE")
    return t


def summary_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    s = doc["scaling"]
    lines.append(f"scaling: {s['nproc']} process(es) from a {s['calibrated_nproc']}-process calibration, efficiency {s['efficiency']} ({s['source']})")
    for name, mem in doc.get("memory", {}).items():
        if not mem.get("fits", True):
            lines.append(f"[DOES NOT FIT] {name}: {mem['needs']}")
    for p in doc["phases"]:
        for note in p["notes"]:
            lines.append(f"note ({p['name']}): {note.splitlines()[0] if note else note}")
    for name, why in doc.get("not_forecast", {}).items():
        lines.append(f"not forecast: {name}: {why}")
    if not doc["triple"]["complete"]:
        lines.append(f"INCOMPLETE: no forecast for {', '.join(doc['triple']['missing_phases'])}; the total leaves them out")
    return lines



def _check_nproc_here(nproc: int | None, device: str) -> None:
    """A calibration runs here: refuse --nproc N when this machine has fewer than N GPUs (it would time
    N CPU processes, or extrapolate hardware it lacks); --hardware forecasts other machines."""
    if not nproc or nproc <= 1:
        return
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        gpus = 0
    if device == "cpu" or gpus < nproc:
        have = "no GPU" if gpus == 0 else f"{gpus} GPU(s)"
        raise ValueError(
            f"--nproc {nproc}: this machine has {have}, so a calibration here cannot stand for {nproc} GPUs; "
            f"forecast other hardware offline instead: nanobench estimate --preset PRESET --hardware {nproc}xH100"
        )


def run_whatif(args: argparse.Namespace) -> int:
    """`estimate --hardware`: the offline what-if forecast (kind: forecast)."""
    from bench.pipeline import selected_phases
    from bench.whatif import WhatIfError, forecast, human_duration, parse_hardware, reference_hourly_rate

    try:
        cfg = load_config(args.config)
        preset = cfg.preset(args.preset)
        hw = parse_hardware(args.hardware)
        if args.nproc is not None and args.nproc != hw.count:
            raise WhatIfError(f"--nproc {args.nproc} contradicts --hardware {args.hardware} ({hw.count} devices); give one of them")
        if args.hourly_rate is not None:
            if args.hourly_rate < 0:
                raise WhatIfError(f"--hourly-rate must be >= 0, got {args.hourly_rate}")
            rate, source = args.hourly_rate, args.price_source or "given on the command line (--hourly-rate)"
        else:
            ref = reference_hourly_rate(hw)
            if ref is None:
                raise WhatIfError(f"the reference price table (bench/reference_prices.toml) has no price for {hw.name}; "
                                  "give --hourly-rate USD for the whole machine")
            rate, source = ref
        subs = Path(args.submissions_dir) if args.submissions_dir else Path(__file__).resolve().parents[2] / "submissions"
        doc = forecast(preset.workload, selected_phases(preset, None, None), hw, hourly_rate=rate, price_source=source,
                       submissions_dir=subs)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console()
    t = Table(title=f"FORECAST (what-if) {preset.name} on {hw.label} at ${rate:g}/h")
    for col in ("phase", "FLOPs", "basis", "MFU", "time low", "time", "time high", "USD"):
        t.add_column(col, justify="left" if col in ("phase", "basis") else "right")
    for row in doc["phases"]:
        t.add_row(row["name"], f"{row['flops']:.3g}", row["basis"], f"{row['mfu']:.0%}" if row["flops"] else "-", human_duration(row["seconds_low"]),
                  human_duration(row["seconds"]), human_duration(row["seconds_high"]), f"{row['seconds'] / 3600 * rate:,.2f}")
    tot = doc["total"]
    t.add_row("[bold]total", "", "", "", human_duration(tot["seconds_low"]), f"[bold]{human_duration(tot['seconds'])}",
              human_duration(tot["seconds_high"]), f"[bold]{tot['usd']:,.2f}")
    console.print(t)
    console.print(f"kind: forecast (nothing was run). {doc['method']}", highlight=False)
    console.print(f"peak: {hw.peak_flops / 1e12:.0f} TFLOP/s bf16 per device ({hw.peak_source}); MFU: {doc['mfu']['source']}", highlight=False)
    console.print(f"price: {source}", highlight=False)
    console.print(f"cost: ${tot['usd']:,.2f} (band ${tot['usd_low']:,.2f} - ${tot['usd_high']:,.2f})", highlight=False)
    for row in doc["phases"]:
        console.print(f"  {row['name']}: {row['detail']}", highlight=False)
    if args.out:
        write_json_atomic(Path(args.out), doc)
        console.print(f"forecast written to {args.out} (kind: forecast)")
    return 0
