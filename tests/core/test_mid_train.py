"""mid_train stage: runs from the base checkpoint, LR by progress, one-pass stop, events, exact resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from chat_stage_fixtures import build_base, drop_step, fresh_artifacts, runtime, tiny_config, weights_of
from nanochat_core import checkpoint as ckpt
from nanochat_core.observer import EVAL, PROGRESS, STEP, ListObserver
from nanochat_core.stages import mid_train
from nanochat_core.stages.mid_train import progress_lr_multiplier, val_token_windows
from nanochat_core.tasks.mixtures import mid_val_mixture
from nanochat_core.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.set_num_threads(1)
    return build_base(tmp_path_factory.mktemp("mid_base"))


def mid_cfg(**fields):
    cfg = tiny_config()
    return dataclasses.replace(cfg, mid_train=dataclasses.replace(cfg.mid_train, **fields))


def test_progress_lr_multiplier():
    assert progress_lr_multiplier(0.0) == 1.0
    assert progress_lr_multiplier(0.79) == 1.0
    assert progress_lr_multiplier(0.9) == pytest.approx(0.5)
    assert progress_lr_multiplier(1.0) == 0.0
    assert progress_lr_multiplier(1.3) == 0.0


def test_mid_train_runs_emits_events_and_checkpoints(base, tmp_path):
    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    obs = ListObserver()
    result = mid_train.run(mid_cfg(), runtime(artifacts, base[1], observer=obs))
    assert result["steps"] == 4 and result["grad_accum"] == 2
    assert torch.isfinite(torch.tensor(result["final_loss"])) and 0 < result["val_bpb"] < 20
    assert len(obs.of(STEP)) == 4 and obs.of(PROGRESS)
    assert [e["metadata"]["step"] for e in obs.of(EVAL)] == [0, 2, 4]  # ORIG evaluates at step 0 too
    out = ckpt.checkpoint_dir(artifacts, "mid")
    meta = ckpt.load_meta(out)
    assert meta["step"] == 4 and meta["source"] == "base"
    assert result["checkpoint_sha256"] == ckpt.model_sha256(out, 4)
    assert weights_of(out, 4).keys() == weights_of(ckpt.checkpoint_dir(artifacts, "base"), 6).keys()


def test_one_pass_over_the_mixture_stops_on_its_own(base, tmp_path):
    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    obs = ListObserver()
    result = mid_train.run(mid_cfg(num_iterations=-1, mixture_limit=1, eval_every=-1), runtime(artifacts, base[1], observer=obs))
    steps = obs.of(STEP)
    assert result["steps"] == len(steps) >= 1
    assert steps[-1]["metadata"]["progress"] >= 1.0
    assert all(s["metadata"]["progress"] < 1.0 for s in steps[:-1])


def test_resume_after_a_checkpoint_gives_bitwise_equal_weights(base, tmp_path):
    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    cfg = mid_cfg(checkpoint_every=2)
    full = mid_train.run(cfg, runtime(artifacts, base[1]))
    out = ckpt.checkpoint_dir(artifacts, "mid")
    final = weights_of(out, 4)
    drop_step(out, 4)  # as if killed after the step-2 checkpoint
    assert ckpt.latest_step(out) == 2
    resumed = mid_train.run(cfg, runtime(artifacts, base[1], resume=True))
    assert resumed["start_step"] == 2
    again = weights_of(out, 4)
    assert all(torch.equal(final[k], again[k]) for k in final)
    assert resumed["params_sha256"] == full["params_sha256"]


def test_val_windows_are_deterministic(base):
    tok = Tokenizer.load(base[0] / "tokenizer")
    val = mid_val_mixture("shipped", limit=4)
    a = val_token_windows(val, tok, seq_len=32, num_rows=3)
    assert a.shape == (3, 33) and torch.equal(a, val_token_windows(val, tok, seq_len=32, num_rows=3))


def test_disabled_stage_is_skipped(tmp_path):
    result = mid_train.run(mid_cfg(enabled=False), runtime(tmp_path / "none", tmp_path / "cache"))
    assert result == {"skipped": True}


def test_training_time_leaves_out_the_first_ten_steps(base, tmp_path):
    """ORIG's mid_train adds dt to total_training_time only after its first 10 steps."""
    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    obs = ListObserver()
    result = mid_train.run(mid_cfg(num_iterations=12, eval_every=-1), runtime(artifacts, base[1], observer=obs))
    dts = [e["metadata"]["dt"] for e in obs.of(STEP)]
    assert len(dts) == 12 and result["timed_steps"] == 2
    assert result["total_training_time"] == pytest.approx(sum(dts[10:]), rel=1e-9)
    assert result["tok_per_s"] == pytest.approx(2 * result["tokens"] / 12 / sum(dts[10:]), rel=1e-9)
