"""sft stage: start checkpoint choice, loss goes down on a fixed batch, events, exact resume, 2-process run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from chat_stage_fixtures import build_base, drop_step, fresh_artifacts, runtime, tiny_config, weights_of
from nanochat_core import checkpoint as ckpt
from nanochat_core.config import SFTConfig
from nanochat_core.conversation_loader import ConversationBatches
from nanochat_core.observer import EVAL, LOG, STEP, ListObserver
from nanochat_core.stages import sft
from nanochat_core.stages.sft import grad_accum_steps, masked_mean_loss, num_steps
from nanochat_core.tasks.mixtures import sft_train_mixture
from nanochat_core.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.set_num_threads(1)
    return build_base(tmp_path_factory.mktemp("sft_base"))


def sft_cfg(mid: bool = False, **fields):
    cfg = tiny_config()
    return dataclasses.replace(
        cfg, mid_train=dataclasses.replace(cfg.mid_train, enabled=mid), sft=dataclasses.replace(cfg.sft, **fields)
    )


def test_step_arithmetic():
    sc = SFTConfig(device_batch_size=4, target_examples_per_step=32, num_iterations=-1, num_epochs=2)
    assert grad_accum_steps(sc, 8) == 1 and grad_accum_steps(sc, 2) == 4
    assert num_steps(sc, 23_000) == (23_000 // 32) * 2
    with pytest.raises(ValueError, match="target_examples_per_step"):
        grad_accum_steps(sc, 3)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(base, tmp_path):
    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    tok = Tokenizer.load(artifacts / "tokenizer")
    data = sft_train_mixture("shipped", limit=2)  # 12 conversations: 3 epochs in 9 steps of 4
    batch = ConversationBatches(data, tok, batch_size=4, max_tokens=128).next()

    def loss_of(stage: str) -> float:
        model, _ = ckpt.load_model(ckpt.checkpoint_dir(artifacts, stage), "cpu")
        with torch.no_grad():
            return float(masked_mean_loss(model, *batch)[0])

    obs = ListObserver()
    result = sft.run(sft_cfg(mixture_limit=2, num_iterations=9, init_lr_frac=0.2, eval_every=-1), runtime(artifacts, base[1], observer=obs))
    assert result["source"] == "base"
    assert any("midtraining is disabled" in str(e["value"]) for e in obs.of(LOG))
    assert loss_of("sft") < loss_of("base") - 0.05


def test_sft_events_metrics_and_checkpoint(base, tmp_path):
    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    obs = ListObserver()
    result = sft.run(sft_cfg(eval_metrics_every=3), runtime(artifacts, base[1], observer=obs))
    # ORIG: num_iterations = 4 visits steps 0..3; the last visit only evaluates, so 3 optimizer steps
    assert result["steps"] == 3 and result["num_iterations"] == 4 and len(obs.of(STEP)) == 3
    evals = {(e["value"], e["metadata"]["step"]) for e in obs.of(EVAL)}
    assert {("val_loss", 0), ("val_loss", 2), ("val_loss", 3), ("sft/MMLU", 3), ("sft/ARC-Easy", 3)} <= evals
    lrs = [e["metadata"]["lr_mult"] for e in obs.of(STEP)]
    assert lrs == pytest.approx([1.0, 0.75, 0.5])  # 1 - step / num_iterations
    assert set(result["metrics"]) == {"MMLU", "ARC-Easy"} and all(0 <= v <= 1 for v in result["metrics"].values())
    assert result["target_tokens"] > 0 and result["tok_per_s"] > 0
    assert ckpt.load_meta(ckpt.checkpoint_dir(artifacts, "sft"))["source"] == "base"


def test_sft_needs_the_mid_checkpoint_when_midtraining_is_enabled(base, tmp_path):
    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="mid checkpoint"):
        sft.run(sft_cfg(mid=True), runtime(artifacts, base[1]))


def test_resume_after_a_checkpoint_gives_bitwise_equal_weights(base, tmp_path):
    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    cfg = sft_cfg(checkpoint_every=2, num_iterations=6, init_lr_frac=0.2)
    full = sft.run(cfg, runtime(artifacts, base[1]))
    out = ckpt.checkpoint_dir(artifacts, "sft")
    final = weights_of(out, 5)
    drop_step(out, 5)
    assert ckpt.latest_step(out) == 4
    resumed = sft.run(cfg, runtime(artifacts, base[1], resume=True))
    assert resumed["start_step"] == 4
    again = weights_of(out, 5)
    assert all(torch.equal(final[k], again[k]) for k in final)
    assert resumed["params_sha256"] == full["params_sha256"]


def test_disabled_stage_is_skipped(tmp_path):
    assert sft.run(sft_cfg(enabled=False), runtime(tmp_path / "x", tmp_path / "c")) == {"skipped": True}


@pytest.mark.slow
def test_two_process_torchrun_sft(base, tmp_path):
    run_dir = tmp_path / "run"
    fresh_artifacts(base[0], run_dir / "artifacts")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sft_cfg(num_iterations=4, eval_every=2).to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "nanochat_core.stages",
           "sft", "--config", str(config), "--run-dir", str(run_dir), "--cache-dir", str(base[1]), "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((run_dir / "phases" / "sft" / "result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 3 and result["grad_accum"] == 1
    out = ckpt.checkpoint_dir(run_dir / "artifacts", "sft")
    assert (out / "optim_000003_rank0.pt").exists() and (out / "optim_000003_rank1.pt").exists()
    events = [json.loads(line) for line in (run_dir / "progress" / "sft.jsonl").read_text().splitlines()]
    assert sum(e["key"] == STEP for e in events) == 3


def test_validation_loss_averages_per_batch_means(base, tmp_path):
    """ORIG: the mean of each batch's mean loss, not the token-weighted mean over all batches."""
    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    tok = Tokenizer.load(artifacts / "tokenizer")
    model, _ = ckpt.load_model(ckpt.checkpoint_dir(artifacts, "base"), "cpu")
    data = sft_train_mixture("shipped", limit=2)

    def batches():
        return ConversationBatches(data, tok, batch_size=2, max_tokens=128)

    expected, weighted, valid = [], 0.0, 0
    it = batches()
    with torch.no_grad():
        for _ in range(3):
            x, y = it.next()
            per_token = model(x, y, loss_reduction="none")
            expected.append(float(per_token.sum() / (y >= 0).sum()))
            weighted, valid = weighted + float(per_token.sum()), valid + int((y >= 0).sum())
    got = sft.validation_loss(model, batches(), 3, runtime(artifacts, base[1]))
    assert got == pytest.approx(sum(expected) / 3, rel=1e-6)
    assert abs(got - weighted / valid) > 1e-4  # the two averages differ on these batches


def test_finetuning_stages_do_not_clip(base, tmp_path):
    """ORIG's mid_train, chat_sft and chat_rl take unclipped steps (only base_train clips)."""
    from nanochat_core.finetune import build_optimizer
    from nanochat_core.optim import MuonAdamW

    artifacts = fresh_artifacts(base[0], tmp_path / "a")
    cfg = sft_cfg()
    assert cfg.pretrain.grad_clip > 0
    rt = runtime(artifacts, base[1])
    models = [ckpt.load_model(ckpt.checkpoint_dir(artifacts, "base"), "cpu")[0] for _ in range(3)]
    ours = build_optimizer(cfg, models[0], rt, init_lr_frac=1.0, momentum=0.95)
    assert ours.grad_clip == 0
    pc = cfg.pretrain
    kw = dict(model_dim=models[0].config.n_embd, matrix_lr=pc.matrix_lr, embedding_lr=pc.embedding_lr,
              unembedding_lr=pc.unembedding_lr, betas=pc.adam_betas, momentum=0.95)
    unclipped = MuonAdamW(models[1].param_groups(), grad_clip=0.0, **kw)
    clipped = MuonAdamW(models[2].param_groups(), grad_clip=1.0, **kw)
    gen = torch.Generator().manual_seed(0)
    for scale in (50.0, 0.01):  # one step far above the clip, one far below
        grads = [torch.randn(p.shape, generator=gen) * scale for p in models[0].parameters()]
        norms = []
        for model, opt in zip(models, (ours, unclipped, clipped)):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            norms.append(float(opt.step()))
            opt.zero_grad()
        assert norms[0] > 1.0 or scale < 1
    weights = [dict(m.named_parameters()) for m in models]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert any(not torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_the_harness_can_lower_the_device_batch_at_run_time(base, tmp_path):
    """The preflight halves sft.device_batch_size when it cannot divide over the world size; the stage takes
    it as a run-time option (outside the workload hash) and trains with it."""
    artifacts = fresh_artifacts(base[0], tmp_path / "b")
    cfg = sft_cfg(mixture_limit=2, num_iterations=2, eval_every=-1, device_batch_size=4, target_examples_per_step=4)
    result = sft.run(cfg, runtime(artifacts, base[1]), device_batch_size="2")  # as --option device_batch_size=2 gives it
    assert result["device_batch_size"] == 2 and result["grad_accum"] == 2
