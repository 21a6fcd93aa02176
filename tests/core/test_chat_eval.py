"""ChatCORE: categorical letter scoring, generative pass@k, rank striping, centering, the stage."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field

import pytest
import torch

from nanochat_core.chat_format import render_for_completion
from nanochat_core.checkpoint import checkpoint_dir, save_checkpoint
from nanochat_core.common import Runtime
from nanochat_core.config import ChatEvalConfig, DataConfig, WorkloadConfig
from nanochat_core.evals.chat import (
    BASELINES,
    CHATCORE_TASKS,
    TaskResult,
    chatcore_score,
    evaluate_categorical,
    evaluate_generative,
    letter_token_ids,
    report_csv,
    run_chatcore,
)
from nanochat_core.model import GPTConfig, build_model
from nanochat_core.observer import EVAL, ListObserver
from nanochat_core.tasks import eval_task
from nanochat_core.tasks.gsm8k import assistant_text, extract_final_answer
from nanochat_core.tokenizer import Tokenizer

TEXTS = ["The answer is A or B or C. Question: what is the capital? 12 + 7 = 19 #### 19"] * 30


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(TEXTS, 300)


@dataclass
class FakeRT:
    """A Runtime stand-in for one rank of a simulated group (all_reduce is done by the test)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def all_reduce_sum(self, tensor):
        return tensor

    def autocast(self):
        return torch.autocast("cpu", enabled=False)


class OracleModel(torch.nn.Module):
    """Puts a high logit on the gold letter at the last prompt position only (decoy elsewhere)."""

    def __init__(self, tokenizer, task, n):
        super().__init__()
        self.vocab = tokenizer.vocab_size
        self.bos = tokenizer.bos_token_id
        self.gold, self.decoy, self.seen = {}, {}, []
        for i in range(n):
            conv = task.get_example(i)
            prompt = tuple(render_for_completion(tokenizer, conv))
            letters = conv["letters"]
            gold = conv["messages"][-1]["content"]
            self.gold[prompt] = letter_token_ids(tokenizer, [gold])[0]
            self.decoy[prompt] = letter_token_ids(tokenizer, [next(x for x in letters if x != gold)])[0]

    def forward(self, idx):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.vocab)
        for b in range(B):
            row = idx[b].tolist()
            while row[-1] == self.bos:
                row.pop()
            self.seen.append(tuple(row))
            logits[b, :, self.decoy[tuple(row)]] = 5.0  # wrong letter everywhere ...
            logits[b, len(row) - 1, self.gold[tuple(row)]] = 10.0  # ... but gold right after <|assistant_start|>
        return logits


def test_categorical_oracle_scores_one(tok):
    task = eval_task("ARC-Challenge", source="shipped", stop=11)
    model = OracleModel(tok, task, 11)
    result = evaluate_categorical(model, tok, task, FakeRT(), batch_size=4)
    assert (result.correct, result.total, result.accuracy) == (11, 11, 1.0)


def test_categorical_zero_model_picks_first_letter(tok):
    """A fresh model has a zero lm_head: all letters tie and argmax takes the first, "A"."""
    task = eval_task("ARC-Easy", source="shipped", stop=16)
    model = build_model(GPTConfig.from_depth(1, vocab_size=tok.vocab_size, seq_len=256), torch.device("cpu"), seed=0)
    result = evaluate_categorical(model, tok, task, FakeRT(), batch_size=8)
    expected = sum(task.get_example(i)["messages"][-1]["content"] == "A" for i in range(16))
    assert 0 < expected < 16
    assert (result.correct, result.total) == (expected, 16)


def test_categorical_striping_across_ranks(tok):
    task = eval_task("ARC-Easy", source="shipped", stop=10)
    seen, totals = [], 0
    for rank in range(3):
        model = OracleModel(tok, task, 10)
        result = evaluate_categorical(model, tok, task, FakeRT(rank=rank, world_size=3), batch_size=2)
        seen.append(set(model.seen))
        totals += result.total
    assert totals == 10
    assert sum(len(s) for s in seen) == 10 and len(set().union(*seen)) == 10


class AnswerEngine:
    """Fake Engine: sample k answers `#### <gold + offsets[k]>` (offset 0 = right)."""

    def __init__(self, tokenizer, task, n, offsets):
        self.tok, self.offsets, self.prompts = tokenizer, offsets, []
        self.gold = {}
        for i in range(n):
            conv = task.get_example(i)
            self.gold[tuple(render_for_completion(tokenizer, conv))] = int(extract_final_answer(assistant_text(conv["messages"][-1])))

    def generate_batch(self, tokens, *, num_samples=1, max_tokens=256, temperature=0.0, top_k=None, seed=42):
        self.prompts.append(tuple(tokens))
        gold = self.gold[tuple(tokens)]
        seqs = [list(tokens) + self.tok.encode(f"so #### {gold + self.offsets[k]}") for k in range(num_samples)]
        return seqs, [[0] * len(tokens) + [1] * (len(s) - len(tokens)) for s in seqs]


def test_generative_pass_at_k(tok):
    task = eval_task("GSM8K", source="shipped", stop=6)
    rt = FakeRT()
    assert evaluate_generative(AnswerEngine(tok, task, 6, [1, 0]), tok, task, rt, num_samples=2).correct == 6
    assert evaluate_generative(AnswerEngine(tok, task, 6, [1, 2]), tok, task, rt, num_samples=2).correct == 0
    assert evaluate_generative(AnswerEngine(tok, task, 6, [1, 0]), tok, task, rt, num_samples=1).correct == 0


def test_generative_striping(tok):
    task = eval_task("SpellingBee", source="shipped", stop=7)
    prompts, total = set(), 0
    for rank in range(2):
        engine = AnswerEngine(tok, task, 7, [0])
        result = evaluate_generative(engine, tok, task, FakeRT(rank=rank, world_size=2))
        assert result.correct == result.total
        total += result.total
        assert not prompts & set(engine.prompts)
        prompts |= set(engine.prompts)
    assert total == 7 and len(prompts) == 7


def test_chatcore_centering_and_null_unless_all_ran():
    results = {
        "ARC-Easy": TaskResult("ARC-Easy", "categorical", 50, 100),
        "ARC-Challenge": TaskResult("ARC-Challenge", "categorical", 25, 100),
        "MMLU": TaskResult("MMLU", "categorical", 100, 100),
        "GSM8K": TaskResult("GSM8K", "generative", 1, 10),
        "HumanEval": TaskResult("HumanEval", "generative", 0, 10),
    }
    assert results["ARC-Easy"].centered == pytest.approx(1 / 3)
    assert results["ARC-Challenge"].centered == pytest.approx(0.0)
    score, reason = chatcore_score(results)
    assert score is None and "SpellingBee" in reason
    results["SpellingBee"] = TaskResult("SpellingBee", "generative", 0, 0)
    assert chatcore_score(results)[0] is None  # ran on no problem = did not run
    results["SpellingBee"] = TaskResult("SpellingBee", "generative", 3, 10)
    score, reason = chatcore_score(results)
    assert reason is None
    assert score == pytest.approx((1 / 3 + 0 + 1 + 0.1 + 0 + 0.3) / 6)
    assert set(CHATCORE_TASKS) == set(BASELINES) and len(CHATCORE_TASKS) == 6


def test_run_chatcore_report(tok, tmp_path):
    tasks = {name: eval_task(name, source="shipped", stop=3) for name in ("ARC-Easy", "GSM8K")}
    model = OracleModel(tok, tasks["ARC-Easy"], 3)
    report = run_chatcore(model, tok, tasks, FakeRT(), engine=AnswerEngine(tok, tasks["GSM8K"], 3, [0]), max_problems=2)
    assert {n: (r.correct, r.total) for n, r in report.tasks.items()} == {"ARC-Easy": (2, 2), "GSM8K": (2, 2)}
    assert report.chatcore is None and "ARC-Challenge" in report.chatcore_reason
    rows = list(csv.DictReader(report_csv(report).splitlines()))
    assert [r["task"] for r in rows] == ["ARC-Easy", "GSM8K", "ChatCORE"] and rows[-1]["centered"] == ""
    assert rows[0]["accuracy"] == "1.000000" and rows[0]["baseline"] == "0.25"


def _make_run(tmp_path, tok):
    artifacts = tmp_path / "run" / "artifacts"
    tok.save(artifacts / "tokenizer")
    model = build_model(GPTConfig.from_depth(1, vocab_size=tok.vocab_size, seq_len=512), torch.device("cpu"), seed=1)
    with torch.no_grad():  # a non-trivial model: perturb the zero-initialized output layers
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    save_checkpoint(checkpoint_dir(artifacts, "sft"), 5, model=model, meta={"stage": "sft"})
    return artifacts


def test_stage_categorical_subset(tok, tmp_path):
    from nanochat_core.stages import chat_eval

    artifacts = _make_run(tmp_path, tok)
    cfg = WorkloadConfig(
        preset="test",
        data=DataConfig(source="shipped"),
        chat_eval=ChatEvalConfig(tasks=("ARC-Easy", "MMLU"), max_problems=5, batch_size=2, source="sft"),
    )
    observer = ListObserver()
    rt = Runtime(device=torch.device("cpu"), artifacts_dir=artifacts, cache_dir=tmp_path / "cache", observer=observer)
    out = chat_eval.run(cfg, rt)
    assert out["chatcore"] is None and "GSM8K" in out["chatcore_reason"]
    assert out["code_sandbox"] is None  # no HumanEval, no model-written code run
    assert set(out["chatcore_tasks"]) == {"ARC-Easy", "MMLU"} and out["examples"] == 10 and out["source"] == "sft"
    phase = tmp_path / "run" / "phases" / "chat_eval"
    data = json.loads((phase / "chat_eval.json").read_text())
    assert data["tasks"]["MMLU"]["total"] == 5 and data["step"] == 5
    assert (phase / "chat_eval.csv").read_text().startswith("task,eval_type")
    assert {e["value"] for e in observer.of(EVAL)} == {"chat_eval/ARC-Easy", "chat_eval/MMLU", "chat_eval/ChatCORE"}


def test_stage_all_six_tasks_with_real_engine(tok, tmp_path):
    pytest.importorskip("nanochat_core.engine")
    pytest.importorskip("nanochat_core.execution")
    from nanochat_core.stages import chat_eval

    artifacts = _make_run(tmp_path, tok)
    cfg = WorkloadConfig(
        preset="test",
        data=DataConfig(source="shipped"),
        chat_eval=ChatEvalConfig(max_problems=2, max_new_tokens=8, batch_size=2, source="sft"),
    )
    rt = Runtime(device=torch.device("cpu"), artifacts_dir=artifacts, cache_dir=tmp_path / "cache")
    out = chat_eval.run(cfg, rt)
    assert out["chatcore_reason"] is None and isinstance(out["chatcore"], float)
    assert set(out["chatcore_tasks"]) == set(CHATCORE_TASKS) and out["examples"] == 12
    # issue 16 items 8, 14: the result names each task's rows / wording (here the offline stand-ins)
    assert set(out["task_rows"]) == set(CHATCORE_TASKS)
    assert "A-D by position" in out["task_rows"]["ARC-Easy"] and "nanobench's own" in out["task_rows"]["SpellingBee"]
    assert -1.0 / 3.0 <= out["chatcore"] <= 1.0
    from nanochat_core import sandbox

    assert out["code_sandbox"] == sandbox.available_mechanism()  # issue 15: the result names the sandbox that ran


WORKER = r'''
import json, sys, torch
from nanochat_core.common import init_runtime, shutdown_runtime
from nanochat_core.evals.chat import evaluate_categorical
from nanochat_core.model import GPTConfig, build_model
from nanochat_core.tasks import eval_task
from nanochat_core.tokenizer import Tokenizer

rt = init_runtime(device="cpu")
tok = Tokenizer.load(sys.argv[1])
task = eval_task("ARC-Easy", source="shipped", stop=10)
model = build_model(GPTConfig.from_depth(1, vocab_size=tok.vocab_size, seq_len=256), torch.device("cpu"), seed=0)
r = evaluate_categorical(model, tok, task, rt, batch_size=2)
if rt.is_main:
    print("RESULT", json.dumps([r.correct, r.total]))
shutdown_runtime(rt)
'''


@pytest.mark.slow
def test_counts_all_reduced_across_two_processes(tok, tmp_path):
    import os
    import subprocess
    import sys

    tok.save(tmp_path / "tok")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(tmp_path / "tok")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    correct, total = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[7:])
    task = eval_task("ARC-Easy", source="shipped", stop=10)
    expected = sum(task.get_example(i)["messages"][-1]["content"] == "A" for i in range(10))
    assert (correct, total) == (expected, 10)
