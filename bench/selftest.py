"""`nanobench selftest --gpu`: one prepared check of a GPU machine, in under 10 minutes on one GPU.

What it runs, each through the real `nanobench run` (a child process, as a user would):

1. **smoke end to end** on the device (every phase, the determinism probe included), then
   `nanobench verify` on its bundle: the whole pipeline works there; energy per phase.
2. **d20 for a few steps with the speedrun batch**: the speedrun's model (depth 20, seq 2048) and
   global batch (524,288 tokens), ``steps`` optimizer steps (30), the device batch chosen by the
   auto-sizer; tok/s, MFU, peak memory, compile seconds, the device-batch record, energy.
   Offline: the data is the shipped corpus and the tokenizer is trained on it with ``vocab`` tokens
   (16,384 by default: the speedrun's 65,536-token tokenizer is trained on 2B characters of
   FineWeb-Edu, which needs the network). The vocabulary changes only the embedding and lm_head
   sizes; MFU uses the model's own FLOPs per token, so it stays comparable.

Everything lands in one JSON (``--out``) with the run directories beside it. ``--dry-run`` runs the
same code on the CPU with tiny presets (a test runs it, so the check cannot rot).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.atomic import write_json_atomic
from bench.config import load_config

SCHEMA = "nanobench-gpu-check/1"
SMOKE = "gpu-check-smoke"
D20 = "gpu-check-d20"


def check_presets(*, dry_run: bool, vocab: int, steps: int, probe_steps: int) -> str:
    """TOML for the two presets the check runs, appended to the shipped bench.toml."""
    if dry_run:  # the same code path on a CPU in about a minute: tiny models, few steps
        return f"""
[presets.{SMOKE}]
inherit = "smoke"
[presets.{SMOKE}.tokenizer]
vocab_size = 512
max_chars = 300_000
[presets.{SMOKE}.pretrain]
depth = 2
seq_len = 64
total_batch_tokens = 512
num_iterations = {max(probe_steps, 3) + 1}
eval_every = -1
eval_tokens = 2048
[presets.{SMOKE}.checks]
probe_steps = {probe_steps}

[presets.{D20}]
inherit = "{SMOKE}"
[presets.{D20}.pretrain]
num_iterations = {steps}
"""
    return f"""
[presets.{SMOKE}]
inherit = "smoke"

[presets.{D20}]
inherit = "speedrun"
[presets.{D20}.tokenizer]
vocab_size = {vocab}
max_chars = 10_000_000
doc_cap = 10_000
[presets.{D20}.data]
source = "shipped"
[presets.{D20}.pretrain]
num_iterations = {steps}
target_param_data_ratio = -1.0
eval_every = -1
eval_tokens = 262_144
[presets.{D20}.extras]
orig_side_work = false
[presets.{D20}.checks]
probe_steps = {probe_steps}
"""


def write_check_config(path: Path, **kw: Any) -> Path:
    """The shipped bench.toml plus the check's presets, validated (both presets resolve)."""
    shipped = load_config()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(shipped.path.read_text(encoding="utf-8") + "\n# --- nanobench selftest --gpu\n" + check_presets(**kw), encoding="utf-8")
    cfg = load_config(path)
    cfg.preset(SMOKE), cfg.preset(D20)
    return path


def _nanobench(args: list[str], log: Path, timeout_s: float) -> tuple[int, float]:
    """Run `nanobench ARGS` as a child process; its output goes to ``log``. (exit code, seconds)."""
    t0 = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=timeout_s, check=False)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            fh.write(f"\nselftest: timed out after {timeout_s:.0f} s\n")
            code = 124
    return code, time.monotonic() - t0


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _tail(path: Path, n: int = 15) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _energy(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [
        {k: p.get(k) for k in ("name", "seconds", "energy_joules", "avg_power_watts", "energy_source", "energy_status", "unavailable_reason")}
        for p in (result or {}).get("phases", [])
    ]


def compile_seconds(step_dts: list[float], skip: int = 10) -> float | None:
    """Seconds the first step took beyond a steady step (compile + warm-up): dt[0] - median(dt after ``skip``)."""
    if len(step_dts) < 2:
        return None
    steady = step_dts[skip + 1:] or step_dts[1:]
    return max(0.0, step_dts[0] - statistics.median(steady))


def _compile_total(first_step_extra: float | None, choice: dict[str, Any] | None) -> float | None:
    """Compile seconds: the first step's excess over a steady step plus the device-batch probe's time."""
    probe = (choice or {}).get("probe_seconds")
    if first_step_extra is None:
        return probe
    return first_step_extra + (probe or 0.0)


def step_times(progress: Path) -> list[float]:
    """dt of every pretraining step from the stage's progress events, in step order."""
    dts: dict[int, float] = {}
    try:
        lines = progress.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        meta = e.get("metadata") or {}
        if e.get("key") == "step" and isinstance(e.get("value"), int) and isinstance(meta.get("dt"), (int, float)):
            dts[e["value"]] = float(meta["dt"])  # a resumed or repeated step keeps its last timing
    return [dts[k] for k in sorted(dts)]


def run_check(
    out: Path,
    *,
    device: str = "cuda",
    dry_run: bool = False,
    vocab: int = 16_384,
    steps: int = 30,
    skip_smoke: bool = False,
    probe_d20: bool = False,
    timeout_s: float = 540.0,
    smoke_share: float = 0.45,
) -> dict[str, Any]:
    """Run the check and write ``out`` (JSON). Returns the figures; ``ok`` says whether every part passed."""
    t_start = time.monotonic()
    work = out.parent / (out.stem + "_runs")
    work.mkdir(parents=True, exist_ok=True)
    config = write_check_config(work / "bench-check.toml", dry_run=dry_run, vocab=vocab, steps=steps,
                                probe_steps=3 if dry_run else 20)
    common = ["--config", str(config), "--hourly-rate", "0", "--device", device, "--runs-dir", str(work),
              "--key-dir", str(work / "keys"), "--cache-dir", str(work / "cache")]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": dry_run,
        "device": device,
        "problems": [],
    }
    deadline = t_start + timeout_s

    def left() -> float:
        return max(30.0, deadline - time.monotonic())

    # ---- 1. smoke end to end (+ determinism probe), then verify
    if not skip_smoke:
        run_id = f"smoke-{int(time.time())}"
        smoke_args = ["run", "--preset", SMOKE, "--run-id", run_id, *common]
        if dry_run:  # the CPU stand-in stops after pretraining (+ the probe): the full smoke takes ~10 min there
            smoke_args += ["--phases", "download,tokenizer,pretrain"]
        code, secs = _nanobench(smoke_args, work / "smoke.log", min(left(), smoke_share * timeout_s))
        result = _load(work / run_id / "result.json")
        smoke: dict[str, Any] = {"exit_code": code, "wall_seconds": secs, "run_dir": str(work / run_id)}
        if result is None:
            report["problems"].append(f"smoke: no result.json (exit {code}); log tail: {' | '.join(_tail(work / 'smoke.log', 5))}")
        else:
            vcode, _ = _nanobench(["verify", str(work / run_id)], work / "smoke-verify.log", 120)
            smoke.update({
                "valid": result.get("valid"), "validity_problems": result.get("validity_problems"),
                "triple": result.get("triple"), "verify_exit_code": vcode, "verify_tail": _tail(work / "smoke-verify.log", 5),
                "val_bpb": (result.get("metrics") or {}).get("val_bpb"),
                "energy": _energy(result), "power_sources": (result.get("power") or {}).get("sources"),
                "accelerators": (result.get("system") or {}).get("gpus"),
            })
            report["determinism"] = result.get("determinism")
            # exit 3: the bundle was written but is not valid for the leaderboard (e.g. its workload hashes do
            # not match the committed pins after a code change, or --phases ran a subset): recorded, not a failure
            if code not in (0, 3):
                report["problems"].append(f"smoke: exit {code}: {result.get('validity_problems')}")
        report["smoke"] = smoke

    # ---- 2. d20 with the speedrun batch, a few steps
    run_id = f"d20-{int(time.time())}"
    args = ["run", "--preset", D20, "--run-id", run_id, "--phases", "download,tokenizer,pretrain", *common]
    if not probe_d20:
        args.append("--no-probe")
    code, secs = _nanobench(args, work / "d20.log", left())
    run_dir = work / run_id
    stage = _load(run_dir / "phases" / "pretrain" / "result.json")
    result = _load(run_dir / "result.json")
    d20: dict[str, Any] = {"exit_code": code, "wall_seconds": secs, "run_dir": str(run_dir), "steps": steps, "vocab": vocab}
    if stage is None:
        report["problems"].append(f"d20: pretrain did not finish (exit {code}); log tail: {' | '.join(_tail(work / 'd20.log', 5))}")
    else:
        dts = step_times(run_dir / "progress" / "pretrain.jsonl")
        d20.update({
            "tok_per_s": stage.get("steady_tok_per_s"),
            "mfu_percent": stage.get("mfu"),
            "peak_memory_bytes": stage.get("peak_memory_bytes"),
            "device_batch_size": stage.get("device_batch_size"),
            "grad_accum": stage.get("grad_accum"),
            "device_batch_choice": stage.get("device_batch_choice"),
            "num_params": stage.get("num_params"),
            "flops_per_token": stage.get("flops_per_token"),
            "device_info": stage.get("device_info"),
            "step_seconds": dts,
            # torch.compile runs in the device-batch probe (same shape as training) and in the first step
            "compile_seconds": _compile_total(compile_seconds(dts), stage.get("device_batch_choice")),
            "first_step_extra_seconds": compile_seconds(dts),
            "energy": _energy(result),
        })
        if probe_d20 and result is not None:
            d20["determinism"] = result.get("determinism")
    report["d20"] = d20
    report["wall_seconds"] = time.monotonic() - t_start
    report["ok"] = not report["problems"]
    write_json_atomic(out, report)
    return report
