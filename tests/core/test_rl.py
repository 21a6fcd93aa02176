"""rl stage: GSM8K reward parsing, group advantages, token-normalized policy loss, masks, pass@k, a tiny run."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from chat_stage_fixtures import build_base, fresh_artifacts, runtime, tiny_config
from nanochat_core import checkpoint as ckpt
from nanochat_core.conversation_loader import collate_conversations
from nanochat_core.observer import EVAL, STEP, ListObserver
from nanochat_core.stages import rl
from nanochat_core.stages.rl import group_advantages, pass_at_k, policy_gradient_loss, rollout_seed
from nanochat_core.tasks.gsm8k import GSM8K


def conversation(answer: str) -> dict:
    return {"messages": [
        {"role": "user", "content": "How many?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Add them up. "}, {"type": "text", "text": f"#### {answer}"}]},
    ]}


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("so the total is #### 1234", 1.0),
        ("#### 1,234", 1.0),  # commas are stripped
        ("####1234 and more text", 0.0),  # ORIG needs one space after #### (issue 16 item 9)
        ("#### 1234.", 0.0),  # ORIG keeps the trailing dot
        ("the answer is 1234", 0.0),  # no ####
        ("#### 1235", 0.0),
        ("#### 12340", 0.0),
        ("", 0.0),
    ],
)
def test_reward_is_the_number_after_the_marker(completion, reward):
    task = GSM8K("main", "test", source="shipped", stop=1)
    assert task.reward(conversation("1,234"), completion) == reward


def test_group_advantages_subtract_the_group_mean():
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert adv.tolist() == [0.5, -0.5, -0.5, 0.5]
    assert group_advantages(torch.tensor([1.0, 1.0, 1.0])).abs().sum() == 0  # all equal: no signal
    assert group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0])).tolist() == [0.75, -0.25, -0.25, -0.25]


def test_policy_loss_normalizes_by_valid_tokens_and_ignores_masked_ones():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -4.0]])
    targets = torch.tensor([[5, 6, -1], [-1, 7, 8]])
    adv = torch.tensor([1.0, -2.0])
    loss = policy_gradient_loss(logp, targets, adv, normalizer=4.0)
    objective = (-1.0 * 1 + -2.0 * 1) + (-0.5 * -2 + -4.0 * -2)  # masked entries left out
    assert loss.item() == pytest.approx(-objective / (4 * 4.0))


def test_positive_advantage_raises_the_sampled_tokens_probability():
    logits = torch.zeros(1, 2, 5, requires_grad=True)
    targets = torch.tensor([[3, 1]])
    for adv, direction in ((1.0, 1), (-1.0, -1)):
        logp = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        loss = policy_gradient_loss(logp, targets, torch.tensor([adv]), normalizer=1.0)
        (grad,) = torch.autograd.grad(loss, logits)
        stepped = (logits - grad).detach()
        new = torch.log_softmax(stepped, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        assert ((new - logp.detach()) * direction > 0).all()


def test_rollout_targets_mask_prompt_padding_and_forced_tool_tokens():
    # prompt (mask 0) = 3 tokens; sampled 10, 11; forced tool output 20, 21; sampled 12
    seq_a, mask_a = [1, 2, 3, 10, 11, 20, 21, 12], [0, 0, 0, 1, 1, 0, 0, 1]
    seq_b, mask_b = [1, 2, 3, 13], [0, 0, 0, 1]
    x, y = collate_conversations([(seq_a, mask_a), (seq_b, mask_b)], pad_id=99)
    assert y[0].tolist() == [-1, -1, 10, 11, -1, -1, 12]
    assert y[1].tolist() == [-1, -1, 13, -1, -1, -1, -1]
    assert x[1].tolist() == [1, 2, 3, 99, 99, 99, 99]


def test_pass_at_k_counts_problems_solved_within_k_samples():
    outcomes = [[False, True, False], [False, False, False], [True, False, False]]
    assert [pass_at_k(outcomes, k) for k in (1, 2, 3)] == [1, 2, 2]


def test_rollout_seeds_are_stable_31_bit_and_distinct():
    seeds = {rollout_seed(s, e, p) for s in range(3) for e in range(3) for p in range(2)}
    assert len(seeds) == 18 and all(0 <= s < 2**31 for s in seeds)
    assert rollout_seed(5, 17, 1) == rollout_seed(5, 17, 1)


def test_disabled_rl_is_skipped_quickly(tmp_path):
    t0 = time.perf_counter()
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, enabled=False))
    assert rl.run(cfg, runtime(tmp_path / "none", tmp_path / "cache")) == {"skipped": True}
    assert time.perf_counter() - t0 < 1.0


def test_tiny_rl_run_trains_evaluates_and_checkpoints(tmp_path_factory):
    torch.set_num_threads(1)
    artifacts, cache = build_base(tmp_path_factory.mktemp("rl_base"))
    artifacts = fresh_artifacts(artifacts, tmp_path_factory.mktemp("rl") / "a")
    obs = ListObserver()
    result = rl.run(tiny_config(), runtime(artifacts, cache, observer=obs))  # no sft/mid checkpoint: falls back to base
    assert result["source"] == "base" and result["steps"] == 2
    steps = obs.of(STEP)
    assert len(steps) == 2 and all(0.0 <= s["metadata"]["mean_reward"] <= 1.0 for s in steps)
    assert result["sampled_tokens"] > 0
    assert set(result["pass_at_k"]) == {"pass@1", "pass@2"}
    assert {e["value"] for e in obs.of(EVAL)} == {"rl/pass@1", "rl/pass@2"}
    meta = ckpt.load_meta(ckpt.checkpoint_dir(artifacts, "rl"))
    assert meta["step"] == 2 and meta["source"] == "base"
