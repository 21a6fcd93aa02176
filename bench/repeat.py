"""`nanobench run --repeat N`: the same preset N times, then mean, standard deviation and min per figure.

Each repetition is an ordinary run (its own run directory `<id>-r1`, `<id>-r2`, ..., its own signed bundle).
The summary (`<runs_dir>/<id>-repeat.json` and `.md`) lists, for every figure, the N values, their mean,
sample standard deviation (n - 1; 0 for one value), min and max, as Phoronix reports repeated runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path
from typing import Any, Callable

from bench.atomic import write_atomic, write_json_atomic

# (label, path into result.json) of the figures summarized
FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("minutes (counted)", ("triple", "minutes")),
    ("USD", ("triple", "usd")),
    ("CORE", ("triple", "core")),
    ("ChatCORE", ("triple", "chatcore")),
    ("val bpb", ("metrics", "val_bpb")),
    ("pretrain tok/s", ("metrics", "tok_per_s")),
    ("pretrain training s", ("metrics", "total_training_time")),
    ("step time CV", ("run_conditions", "step_time", "cv")),
)


def _get(doc: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return float(doc) if isinstance(doc, (int, float)) and not isinstance(doc, bool) else None


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure (and per phase's seconds): values, mean, stdev, min, max over the runs that have it."""
    rows: dict[str, dict[str, Any]] = {}
    figures = list(FIGURES)
    phase_names: list[str] = []
    for r in results:
        for p in r.get("phases") or []:
            if isinstance(p, dict) and p.get("name") not in phase_names:
                phase_names.append(p["name"])
    for label, path in figures:
        rows[label] = _stats([_get(r, path) for r in results])
    for name in phase_names:
        vals = []
        for r in results:
            secs = next((p.get("seconds") for p in r.get("phases") or [] if isinstance(p, dict) and p.get("name") == name), None)
            vals.append(float(secs) if isinstance(secs, (int, float)) else None)
        rows[f"{name} s"] = _stats(vals)
    return {
        "runs": [r.get("run_id") for r in results],
        "n": len(results),
        "preset": results[0].get("preset") if results else None,
        "busy_runs": [r.get("run_id") for r in results if (r.get("run_conditions") or {}).get("busy")],
        "figures": rows,
    }


def _stats(values: list[float | None]) -> dict[str, Any]:
    have = [v for v in values if v is not None]
    if not have:
        return {"values": values, "n": 0, "mean": None, "stdev": None, "min": None, "max": None}
    return {"values": values, "n": len(have), "mean": statistics.fmean(have),
            "stdev": statistics.stdev(have) if len(have) > 1 else 0.0, "min": min(have), "max": max(have)}


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.3f}"
    return f"{v:.4g}"


def to_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# {summary['preset']}: {summary['n']} runs", "",
             "Runs: " + ", ".join(str(r) for r in summary["runs"]), ""]
    if summary["busy_runs"]:
        lines += [f"Busy machine during: {', '.join(summary['busy_runs'])}", ""]
    lines += ["| figure | mean | stdev | min | max | n |", "|---|---:|---:|---:|---:|---:|"]
    for label, s in summary["figures"].items():
        if s["n"]:
            lines.append(f"| {label} | {_fmt(s['mean'])} | {_fmt(s['stdev'])} | {_fmt(s['min'])} | {_fmt(s['max'])} | {s['n']} |")
    return "\n".join(lines) + "\n"


def print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{summary['preset']}: {summary['n']} runs (mean, standard deviation, min, max)")
    for col in ("figure", "mean", "stdev", "min", "max", "n"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for label, s in summary["figures"].items():
        if s["n"]:
            t.add_row(label, _fmt(s["mean"]), _fmt(s["stdev"]), _fmt(s["min"]), _fmt(s["max"]), str(s["n"]))
    Console().print(t)


def run_repeated(args: argparse.Namespace, run_once: Callable[[argparse.Namespace], int]) -> int:
    """Run `run_once` args.repeat times with run ids `<base>-r<i>`; write and print the summary.
    Stops at the first run that fails (exit code 1/2/130); an invalid run (3) is kept and counted."""
    from bench.config import load_config
    from bench.result import new_run_id

    cfg = load_config(args.config)
    base = args.run_id or new_run_id(args.preset)
    runs_dir = Path(args.runs_dir or cfg.harness.runs_dir)
    results, worst = [], 0
    for i in range(1, args.repeat + 1):
        one = copy.copy(args)
        one.run_id = f"{base}-r{i}"
        one.repeat = 1
        one.skip_preflight = i > 1  # the first run's preflight covered the machine
        print(f"=== repeat {i}/{args.repeat}: {one.run_id}", flush=True)
        code = run_once(one)
        if code not in (0, 3):
            print(f"error: repeat {i}/{args.repeat} failed (exit {code}); summary of the {len(results)} finished run(s) only")
            worst = code
            break
        worst = max(worst, code)
        results.append(json.loads((runs_dir / one.run_id / "result.json").read_text(encoding="utf-8")))
    if results:
        summary = summarize(results)
        write_json_atomic(runs_dir / f"{base}-repeat.json", summary)
        write_atomic(runs_dir / f"{base}-repeat.md", to_markdown(summary))
        print_table(summary)
        print(f"summary: {runs_dir / (base + '-repeat.json')} and .md")
    return worst
