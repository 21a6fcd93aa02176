"""Checkpoint cadence as a harness setting (issue 18, item 2): the workload itself never checkpoints
mid-stage (pretrain.checkpoint_every = 0, as in every shipped preset); the harness's
[presets.<name>.checkpoint] cadence does. SIGKILL mid-pretraining, `run --resume`: the stage resumes from
the last harness checkpoint (less than one interval lost), the result equals an uninterrupted run's, and
result.json says the run was resumed and how many seconds were carried."""

from __future__ import annotations

import json
import signal
import shutil
from pathlib import Path

import pytest

from reliability_helpers import (
    TINY_CHECKPOINT_EVERY,
    TINY_TOML,
    nanobench,
    pretrain_outcome,
    progress_events,
    run_args,
    signal_group,
    start_nanobench,
    wait_for_point,
    wait_no_stage_processes,
)

pytestmark = pytest.mark.slow

EVERY = 5  # harness cadence: a checkpoint every 5 pretraining steps (and no time-based ones)
KILL_AT = 17

CADENCE_TOML = TINY_TOML.replace(f"checkpoint_every = {TINY_CHECKPOINT_EVERY}\n", "checkpoint_every = 0\n").replace(
    "idle_baseline_seconds = 0.0\n", "idle_baseline_seconds = 0.0\ncheckpoint_minutes = 0.0\n"
) + f"\n[presets.tiny.checkpoint]\nevery_steps = {EVERY}\n"


def _write(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "bench.toml").write_text(CADENCE_TOML, encoding="utf-8")


def test_sigkill_mid_pretrain_resumes_from_the_harness_checkpoint(tmp_path):
    assert "checkpoint_every = 0\n" in CADENCE_TOML
    ref_root, root = tmp_path / "ref", tmp_path / "faulted"
    _write(ref_root)
    ref = nanobench(run_args(ref_root, "reference"), ref_root)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    ref_dir = ref_root / "runs" / "reference"
    ref_result = json.loads((ref_dir / "result.json").read_text())
    assert ref_result["resume"] == {"resumed": False, "resumes": 0, "carried_seconds": 0.0, "resumed_phases": []}
    # the same bundle records the machine's load and the step-time spread (issue 18, item 3) and the preflight
    cond = ref_result["run_conditions"]
    assert {"busy", "allow_busy", "reason", "load_before", "load_during", "step_time"} <= set(cond)
    assert cond["step_time"]["p50"] > 0 and cond["step_time"]["p95"] >= cond["step_time"]["p50"]
    assert cond["load_during"]["samples"] >= 1 and cond["allow_busy"] is False
    assert ref_result["preflight"]["network"]["needed"] is False
    # the harness cadence checkpointed at 5, 10, ..., 25 (the workload alone would not); older ones are pruned,
    # the last two complete steps stay
    ckpts = sorted(p.name for p in (ref_dir / "artifacts" / "checkpoints" / "base").glob("model_*.pt"))
    assert ckpts == ["model_000025.pt", "model_000030.pt"], ckpts

    _write(root)
    shutil.copytree(ref_root / "cache", root / "cache")
    run_dir = root / "runs" / "faulted"
    proc, log = start_nanobench(run_args(root, "faulted"), root, "attempt0.log")
    wait_for_point(proc, run_dir, "pretrain", KILL_AT)
    assert signal_group(proc, signal.SIGKILL) == -signal.SIGKILL
    assert not wait_no_stage_processes(run_dir, timeout=15)
    last_before = max(e["value"] for e in progress_events(run_dir, "pretrain") if e["key"] == "step")
    seen = len(progress_events(run_dir, "pretrain"))

    done = nanobench(["run", "--resume", str(run_dir)], root, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    resumed_events = progress_events(run_dir, "pretrain")[seen:]
    first_step = min(e["value"] for e in resumed_events if e["key"] == "step")
    # resumed from the last harness checkpoint: fewer steps redone than one interval
    assert first_step % EVERY == 0 and first_step > 0, first_step
    assert last_before + 1 - first_step < EVERY + 1, (last_before, first_step)
    assert any(e["key"] == "log" and f"resumed from step {first_step}" in str(e["value"]) for e in resumed_events)

    got, want = pretrain_outcome(run_dir), pretrain_outcome(ref_dir)
    assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    result = json.loads((run_dir / "result.json").read_text())
    assert result["resume"]["resumed"] is True and result["resume"]["resumes"] == 1
    assert "pretrain" in result["resume"]["resumed_phases"] and result["resume"]["carried_seconds"] > 0
    # lost time: the interrupted attempt's work after its last checkpoint is less than one interval of steps
    steps = {e["value"]: e["time_ms"] for e in progress_events(run_dir, "pretrain")[:seen] if e["key"] == "step"}
    interval_ms = steps[2 * EVERY] - steps[EVERY]
    lost_ms = steps[last_before] - steps[first_step - 1]
    assert lost_ms < interval_ms + 1000, (lost_ms, interval_ms)
