"""The pretraining stage end to end on a tiny preset: determinism, kill-and-resume, 1 vs 2 processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pretrain_helpers import (
    REPO_ROOT, ROWS, STEPS, new_run, prepare, read_jsonl, runtime, step_records, tiny_workload, write_config,
)

from nanochat_core import checkpoint as ckpt
from nanochat_core.model import GPTConfig, build_model
from nanochat_core.stages import pretrain

KILL_AFTER = 3  # the checkpoint step the killed run must reach


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("pretrain-data"))


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory):
    """One uninterrupted single-process run: (result, STEP records)."""
    artifacts = new_run(prepared, tmp_path_factory.mktemp("reference"))
    rt = runtime(artifacts, prepared.cache)
    result = pretrain.run(prepared.cfg, rt)
    return result, step_records(rt.observer.events)


def _stage_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return env


def _stage_args(config: Path, run_dir: Path, cache: Path) -> list[str]:
    return ["pretrain", "--config", str(config), "--run-dir", str(run_dir), "--cache-dir", str(cache), "--device", "cpu",
            "--no-compile"]


def test_prepared_inputs(prepared):
    res = prepared.tokenizer_result
    assert res["vocab_size"] == 512 and res["train_chars"] >= prepared.cfg.tokenizer.max_chars  # the last doc is kept whole (ORIG)
    assert (prepared.tokenizer_dir / "tokenizer.json").exists()


def test_reference_run_learns_and_reports(reference, prepared):
    result, steps = reference
    assert [s for s, _, _ in steps] == list(range(STEPS))
    losses = [loss for _, loss, _ in steps]
    assert losses[-1] < losses[0] - 0.5  # it trains
    assert result["steps"] == STEPS and result["tokens"] == STEPS * ROWS * 64
    assert result["grad_accum"] == 2 and result["device_batch_size"] == 4
    assert 0 < result["val_bpb"] < 10
    config = GPTConfig.from_depth(2, vocab_size=512, seq_len=64)
    model = build_model(config, torch.device("meta"), seed=0)
    assert result["num_params"] == model.num_params()
    assert result["flops_per_token"] == model.flops_per_token()
    assert len(set(fp for _, _, fp in steps)) == STEPS  # every batch is different


def test_same_seed_runs_are_bitwise_identical(prepared, reference, tmp_path):
    ref, ref_steps = reference
    rt = runtime(new_run(prepared, tmp_path), prepared.cache)
    again = pretrain.run(prepared.cfg, rt)
    assert step_records(rt.observer.events) == ref_steps  # losses as floats: bitwise
    for key in ("params_sha256", "val_bpb", "fingerprint_chain", "final_loss"):
        assert again[key] == ref[key], key


def test_probe_matches_the_full_run(prepared, reference, tmp_path):
    ref, ref_steps = reference
    rt = runtime(new_run(prepared, tmp_path), prepared.cache)
    out = pretrain.run(prepared.cfg, rt, probe_steps=3, stop_after_probe=True)
    probe = out["probe"]
    assert probe["losses"] == [loss for _, loss, _ in ref_steps[:3]]
    assert probe["fingerprints"] == [fp for _, _, fp in ref_steps[:3]]
    assert len(probe["params_sha256"]) == 64
    assert ckpt.latest_step(ckpt.checkpoint_dir(rt.artifacts_dir, "base")) is None  # the probe writes nothing


def test_different_seed_changes_the_weights(prepared, reference, tmp_path):
    import dataclasses

    cfg = dataclasses.replace(prepared.cfg, seed=prepared.cfg.seed + 1)
    rt = runtime(new_run(prepared, tmp_path), prepared.cache)
    other = pretrain.run(cfg, rt)
    assert other["params_sha256"] != reference[0]["params_sha256"]
    assert other["fingerprint_chain"] == reference[0]["fingerprint_chain"]  # same data order


def _delete_checkpoints_after(directory: Path, step: int) -> None:
    for path in directory.iterdir():
        m = re.match(r"(?:model|meta|optim|state)_(\d{6})", path.name)
        if m and int(m.group(1)) > step:
            path.unlink()


def test_kill_and_resume_equals_uninterrupted(prepared, reference, tmp_path):
    """Run with checkpoint_every=3 in a child, SIGKILL it once step 3 is on disk, resume: same weights, same bpb."""
    ref, ref_steps = reference
    cfg = tiny_workload(checkpoint_every=KILL_AFTER)
    assert cfg.pretrain.num_iterations == prepared.cfg.pretrain.num_iterations  # same schedule as the reference
    run_dir = tmp_path / "run"
    artifacts = new_run(prepared, run_dir)
    config = write_config(cfg, tmp_path / "config.json")
    out_dir = ckpt.checkpoint_dir(artifacts, "base")
    child = subprocess.Popen(
        [sys.executable, "-m", "nanochat_core.stages", *_stage_args(config, run_dir, prepared.cache)],
        env=_stage_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while not (out_dir / f"meta_{KILL_AFTER:06d}.json").exists():
            if child.poll() is not None:
                pytest.fail(f"the child ended (rc {child.returncode}) before checkpoint {KILL_AFTER}: {child.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 120 s")
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stderr.close()
    # Whatever the child managed after step 3 is discarded: the resumed run must redo it.
    _delete_checkpoints_after(out_dir, KILL_AFTER)
    assert ckpt.latest_step(out_dir) == KILL_AFTER
    killed_steps = step_records(read_jsonl(run_dir / "progress" / "pretrain.jsonl"))
    assert killed_steps[:KILL_AFTER] == ref_steps[:KILL_AFTER]  # child process = in-process run, bitwise

    rt = runtime(artifacts, prepared.cache, resume=True)
    resumed = pretrain.run(cfg, rt)
    assert resumed["start_step"] == KILL_AFTER
    assert step_records(rt.observer.events) == ref_steps[KILL_AFTER:]
    assert resumed["params_sha256"] == ref["params_sha256"]
    assert resumed["val_bpb"] == ref["val_bpb"]
    assert resumed["fingerprint_chain"] == ref["fingerprint_chain"]


def test_resume_without_checkpoint_starts_at_zero(prepared, reference, tmp_path):
    rt = runtime(new_run(prepared, tmp_path), prepared.cache, resume=True)
    result = pretrain.run(prepared.cfg, rt)
    assert result["start_step"] == 0 and result["params_sha256"] == reference[0]["params_sha256"]


@pytest.mark.slow
def test_two_gloo_processes_equal_one(prepared, reference, tmp_path):
    """torchrun, 2 CPU ranks x 4 rows x 1 micro-step == 1 rank x 4 rows x 2 micro-steps."""
    ref, ref_steps = reference
    run_dir = tmp_path / "run"
    new_run(prepared, run_dir)
    config = write_config(prepared.cfg, tmp_path / "config.json")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "nanochat_core.stages", *_stage_args(config, run_dir, prepared.cache)],
        env=_stage_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    events = read_jsonl(run_dir / "progress" / "pretrain.jsonl")
    steps = step_records(events)
    assert [s for s, _, _ in steps] == list(range(STEPS))
    assert [fp for _, _, fp in steps] == [fp for _, _, fp in ref_steps]
    for (_, loss, _), (_, ref_loss, _) in zip(steps, ref_steps):
        assert loss == pytest.approx(ref_loss, rel=1e-5)
    result = json.loads((run_dir / "phases" / "pretrain" / "result.json").read_text())
    assert result["world_size"] == 2 and result["grad_accum"] == 1
    assert result["fingerprint_chain"] == ref["fingerprint_chain"]
    assert result["val_bpb"] == pytest.approx(ref["val_bpb"], rel=1e-4)
