"""Shared helpers for the reliability suite: a tiny bench.toml, `nanobench` subprocesses, fault points.

Every `nanobench` started here runs in its own session (so a test can SIGKILL/SIGTERM its whole process
group), with `OMP_NUM_THREADS=1`, a private `NANOBENCH_KEY_DIR`, and tmp runs/cache directories.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PHASES_NO_EVAL = "download,tokenizer,pretrain"
TINY_STEPS = 30
TINY_CHECKPOINT_EVERY = 4
TINY_PROBE_STEPS = 2

# Derived from the smoke preset: d2, seq 64, 30 steps, a checkpoint every 4 steps, tiny evals.
TINY_TOML = f"""
[harness]
runs_dir = "runs"
cache_dir = "cache"
idle_baseline_seconds = 0.0

[presets.tiny]
seed = 42
[presets.tiny.tokenizer]
vocab_size = 512
max_chars = 200_000
doc_cap = 2_000
[presets.tiny.data]
source = "shipped"
[presets.tiny.pretrain]
depth = 2
seq_len = 64
total_batch_tokens = 512
num_iterations = {TINY_STEPS}
target_param_data_ratio = -1.0
eval_every = 10
eval_tokens = 1024
checkpoint_every = {TINY_CHECKPOINT_EVERY}
muon_momentum_ramp_steps = 5
[presets.tiny.base_eval]
bundle = "offline"
core_max_per_task = 2
bpb_tokens = 1024
[presets.tiny.mid_train]
enabled = false
[presets.tiny.sft]
enabled = false
[presets.tiny.chat_eval]
max_problems = 1
max_new_tokens = 8
[presets.tiny.checks]
probe_steps = {TINY_PROBE_STEPS}
val_bpb_band = [0.0, 10.0]
val_bpb_band_source = "reliability test preset"
"""


def write_tiny_config(directory: Path, extra: str = "") -> Path:
    """Write the tiny preset (plus `extra` TOML appended) to `directory/bench.toml`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bench.toml"
    path.write_text(TINY_TOML + extra, encoding="utf-8")
    return path


def cli_env(root: Path) -> dict[str, str]:
    """Environment for a `nanobench` child: one thread, a private key dir, the repo importable."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NANOBENCH_KEY_DIR": str(root / "keys"),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def run_args(root: Path, run_id: str, *, phases: str = PHASES_NO_EVAL, probe: bool = True) -> list[str]:
    """Arguments of a fresh tiny `nanobench run` under `root`."""
    args = [
        "run", "--config", str(root / "bench.toml"), "--preset", "tiny", "--hourly-rate", "2",
        "--price-source", "reliability test", "--runs-dir", str(root / "runs"), "--cache-dir", str(root / "cache"),
        "--run-id", run_id, "--phases", phases, "--device", "cpu",
    ]
    return args if probe else args + ["--no-probe"]


def nanobench(args: list[str], root: Path, *, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `nanobench ARGS` to completion in `root`; stdout/stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], cwd=root, env=cli_env(root), capture_output=True, text=True,
        timeout=timeout,
    )


def start_nanobench(args: list[str], root: Path, log_name: str) -> tuple[subprocess.Popen, Path]:
    """Start `nanobench ARGS` in a session of its own (pgid == pid); output goes to `root/log_name`."""
    log = root / log_name
    fh = open(log, "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.cli", *args], cwd=root, env=cli_env(root), stdout=fh,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    finally:
        fh.close()
    return proc, log


def progress_events(run_dir: Path, phase: str) -> list[dict[str, Any]]:
    path = run_dir / "progress" / f"{phase}.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def wait_for_point(proc: subprocess.Popen, run_dir: Path, phase: str, step: int, *, timeout: float = 240) -> None:
    """Block until the phase's progress log shows training step `step` (-1: the stage has started).

    Raises if the process exits first or the deadline passes.
    """
    seen_before = len(progress_events(run_dir, phase))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = progress_events(run_dir, phase)[seen_before:]
        if step < 0 and any(e["key"] == "stage_start" for e in events):
            return
        if any(e["key"] == "step" and e["value"] >= step for e in events):
            return
        if proc.poll() is not None:
            raise AssertionError(f"nanobench exited with {proc.returncode} before {phase} step {step}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {phase} step {step}")


def signal_group(proc: subprocess.Popen, sig: signal.Signals, *, timeout: float = 60) -> int:
    """Send `sig` to the process group of `proc` (the `nanobench run` session) and reap it."""
    os.killpg(proc.pid, sig)
    return proc.wait(timeout=timeout)


def stage_processes(run_dir: Path) -> list[int]:
    """PIDs of live `nanochat_core.stages` processes working on `run_dir` (orphans included)."""
    import psutil

    target = str(run_dir.resolve())
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        cmd = p.info.get("cmdline") or []
        if "nanochat_core.stages" not in cmd or "--run-dir" not in cmd or p.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        given = cmd[cmd.index("--run-dir") + 1]
        full = given if os.path.isabs(given) else os.path.join(p.info.get("cwd") or "", given)
        if os.path.realpath(full) == target:
            found.append(p.info["pid"])
    return found


def wait_no_stage_processes(run_dir: Path, timeout: float = 30) -> list[int]:
    """Wait until no stage process works on `run_dir`; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = stage_processes(run_dir)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = stage_processes(run_dir)
    return alive


def pretrain_outcome(run_dir: Path) -> dict[str, Any]:
    """What must be bitwise equal between an interrupted-and-resumed run and an uninterrupted one."""
    result = json.loads((run_dir / "result.json").read_text())
    stage = json.loads((run_dir / "phases" / "pretrain" / "result.json").read_text())
    return {
        "val_bpb": result["metrics"]["val_bpb"],
        "min_val_bpb": result["metrics"]["min_val_bpb"],
        "checkpoint_base": result["workload"]["checkpoints"]["base"],
        "fingerprint_chain": stage["fingerprint_chain"],
        "params_sha256": stage["params_sha256"],
        "final_loss": stage["final_loss"],
        "determinism": result["determinism"]["class"],
    }


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())
