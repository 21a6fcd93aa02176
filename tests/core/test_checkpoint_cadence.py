"""The run-time checkpoint cadence (nanochat_core/checkpoint_cadence.py), how the harness configures it
(bench.toml [harness] + [presets.<name>.checkpoint], outside the workload hash), and pruning of older steps."""

from __future__ import annotations

import pytest
import torch

from bench.config import ConfigError, load_config
from nanochat_core import checkpoint as ckpt
from nanochat_core.checkpoint_cadence import CheckpointCadence
from nanochat_core.model import GPTConfig, build_model


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_time_based_cadence_fires_once_per_interval():
    clock = FakeClock()
    c = CheckpointCadence(every_seconds=600, clock=clock)
    fired = []
    for step in range(1, 50):
        clock.t += 30  # 30 s per step: an interval is 20 steps
        if c.due(step, 0):
            fired.append(step)
    assert fired == [20, 40]


def test_step_floor_and_the_presets_own_every_combine():
    c = CheckpointCadence(every_steps=10, clock=FakeClock())
    assert [s for s in range(1, 31) if c.due(s, 0, config_every=4)] == [4, 8, 10, 12, 16, 20, 24, 28, 30]
    assert not c.due(10, 10)  # never at the step the stage started from
    assert not CheckpointCadence().due(100, 0)  # all zero: only at the end (the stage's own last step)
    with pytest.raises(ValueError):
        CheckpointCadence(every_seconds=-1)


def test_harness_cadence_is_outside_the_workload_hash(tmp_path):
    cfg = load_config()
    smoke = cfg.preset("smoke")
    assert smoke.checkpoint.for_stage("pretrain", cfg.harness) == (10.0, 20)
    assert smoke.checkpoint.for_stage("sft", cfg.harness) == (10.0, 10)
    assert cfg.preset("speedrun").checkpoint.for_stage("pretrain", cfg.harness) == (10.0, 0)
    text = cfg.path.read_text().replace("every_steps = 20\n", "every_steps = 7\n", 1)
    other = tmp_path / "bench.toml"
    other.write_text(text)
    changed = load_config(other).preset("smoke")
    assert changed.checkpoint.every_steps == 7
    assert changed.config_sha256() == smoke.config_sha256()  # the cadence is not the workload
    other.write_text(text.replace("checkpoint_minutes = 10.0", "checkpoint_minutes = -3"))
    with pytest.raises(ConfigError, match="harness.checkpoint_minutes"):
        load_config(other)


def test_a_stage_gets_the_cadence_from_the_harness_options():
    from bench.commands.run import checkpoint_options

    cfg = load_config()
    opts = checkpoint_options(cfg.preset("smoke"), cfg.harness)
    assert opts["pretrain"] == {"checkpoint_minutes": 10.0, "checkpoint_every_steps": 20}
    assert opts["mid_train"]["checkpoint_every_steps"] == 10 and set(opts) == {"pretrain", "mid_train", "sft", "rl"}


def test_a_newer_complete_checkpoint_prunes_the_older_ones(tmp_path):
    model = build_model(GPTConfig.from_depth(1, vocab_size=64, seq_len=8), torch.device("cpu"), seed=0)
    for step in (5, 10, 15, 20):
        ckpt.save_checkpoint(tmp_path, step, model=model, meta={}, optimizer_state={"s": step}, train_state={"t": step})
    # the newest complete step and the one before it stay (a resume needs one; the other is a spare)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "meta_000015.json", "meta_000020.json", "model_000015.pt", "model_000020.pt",
        "optim_000015_rank0.pt", "optim_000020_rank0.pt", "state_000015_rank0.pt", "state_000020_rank0.pt"]
    assert ckpt.latest_step(tmp_path) == 20


def _two_rank_worker(rank: int, port: int, out) -> None:
    import os

    import torch.distributed as dist

    from nanochat_core.common import Runtime

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        rt = Runtime(device=torch.device("cpu"), rank=rank, world_size=2)
        clock = FakeClock()
        c = CheckpointCadence(every_seconds=60, clock=clock)
        clock.t = 61.0 if rank == 0 else 5.0  # only rank 0's clock says the interval is over
        out.put((rank, c.due(3, 0, rt=rt), c.due(4, 0, rt=rt)))
    finally:
        dist.destroy_process_group()


def test_ranks_agree_on_a_time_based_checkpoint():
    """Clocks differ between ranks: the time rule is reduced over ranks so that all save at the same step
    (a rank that skipped the save would leave the others waiting in its barrier)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_two_rank_worker, args=(r, port, out)) for r in (0, 1)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    # step 3: rank 0's interval is over, so both save; step 4: its timer restarted, nobody saves
    assert results == [(0, True, False), (1, True, False)]
