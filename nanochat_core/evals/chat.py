"""ChatCORE: accuracy of a chat model on six tasks, centered by chance level (spec section 10).

Categorical tasks (ARC-Easy, ARC-Challenge, MMLU): prompts from ``render_for_completion`` are
batched (right-padded with BOS), one forward pass gives the logits right after
``<|assistant_start|>``, restricted to the answer letters' token ids; the argmax letter is the
answer. Generative tasks (GSM8K, HumanEval, SpellingBee): the Engine samples ``num_samples``
completions per problem (calculator tool active); a problem passes if any completion is correct.

Problems are striped across ranks (categorical: whole batches) and the counts all-reduced.
ChatCORE = mean over the six tasks of ``(acc - baseline) / (1 - baseline)``; it is reported only
when every one of the six tasks ran, otherwise it is None with the reason.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch

from nanochat_core.chat_format import render_for_completion
from nanochat_core.download import atomic_write_bytes
from nanochat_core.tasks.base import Task

BASELINES: dict[str, float] = {
    "ARC-Easy": 0.25,
    "ARC-Challenge": 0.25,
    "MMLU": 0.25,
    "GSM8K": 0.0,
    "HumanEval": 0.0,
    "SpellingBee": 0.0,
}
CHATCORE_TASKS = tuple(BASELINES)
CATEGORICAL_TASKS = ("ARC-Easy", "ARC-Challenge", "MMLU")

ProgressFn = Callable[[str, int, int], None]  # (task name, problems done on this rank, problems on this rank)


class EvalRuntime(Protocol):
    """What the evaluation needs from :class:`nanochat_core.common.Runtime`."""

    device: torch.device
    rank: int
    world_size: int

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor: ...

    def autocast(self) -> Any: ...


class GenerativeEngine(Protocol):
    def generate_batch(
        self, tokens: list[int], *, num_samples: int, max_tokens: int, temperature: float, top_k: int | None, seed: int
    ) -> tuple[list[list[int]], list[list[int]]]: ...


@dataclass
class TaskResult:
    name: str
    eval_type: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def baseline(self) -> float:
        return BASELINES.get(self.name, 0.0)

    @property
    def centered(self) -> float:
        return centered_accuracy(self.accuracy, self.baseline)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy, "baseline": self.baseline, "centered": self.centered}


@dataclass
class ChatCoreReport:
    tasks: dict[str, TaskResult]
    chatcore: float | None
    chatcore_reason: str | None
    chatcore_cat: float | None  # mean centered accuracy of the categorical tasks (when all three ran)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chatcore": self.chatcore,
            "chatcore_reason": self.chatcore_reason,
            "chatcore_cat": self.chatcore_cat,
            "tasks": {name: result.to_dict() for name, result in self.tasks.items()},
            "settings": self.settings,
        }


def centered_accuracy(accuracy: float, baseline: float) -> float:
    """Accuracy rescaled so chance level is 0 and perfect is 1."""
    return (accuracy - baseline) / (1.0 - baseline)


def chatcore_score(results: Mapping[str, TaskResult], required: Sequence[str] = CHATCORE_TASKS) -> tuple[float | None, str | None]:
    """(ChatCORE, None) when every required task ran on at least one problem, else (None, reason)."""
    missing = [name for name in required if name not in results or results[name].total == 0]
    if missing:
        return None, f"ChatCORE needs all of {', '.join(required)}; not run: {', '.join(missing)}"
    return sum(results[name].centered for name in required) / len(required), None


def problem_count(task: Task, max_problems: int | None) -> int:
    n = task.num_examples()
    return n if max_problems is None or max_problems < 0 else min(n, max_problems)


def letter_token_ids(tokenizer, letters: Sequence[str]) -> list[int]:
    """Token id of each answer letter; every letter must encode to exactly one token."""
    ids = []
    for letter in letters:
        encoded = tokenizer.encode(letter)
        assert len(encoded) == 1, f"answer letter {letter!r} encodes to {len(encoded)} tokens, expected 1"
        ids.append(encoded[0])
    return ids


def _reduce_counts(rt: EvalRuntime, correct: int, total: int) -> tuple[int, int]:
    counts = torch.tensor([correct, total], dtype=torch.long, device=rt.device)
    rt.all_reduce_sum(counts)
    return int(counts[0].item()), int(counts[1].item())


@torch.no_grad()
def evaluate_categorical(
    model: torch.nn.Module,
    tokenizer,
    task: Task,
    rt: EvalRuntime,
    *,
    name: str | None = None,
    batch_size: int = 8,
    max_problems: int | None = None,
    progress: ProgressFn | None = None,
) -> TaskResult:
    """Letter-argmax accuracy of ``model`` on a multiple-choice task."""
    name = name or task.name
    n = problem_count(task, max_problems)
    batches = [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    mine = batches[rt.rank :: rt.world_size]
    pad = tokenizer.bos_token_id
    correct = total = done = 0
    for batch in mine:
        conversations = [task.get_example(i) for i in batch]
        prompts = [render_for_completion(tokenizer, c) for c in conversations]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([p + [pad] * (width - len(p)) for p in prompts], dtype=torch.long, device=rt.device)
        with rt.autocast():
            logits = model(ids)
        for row, (conversation, prompt) in enumerate(zip(conversations, prompts)):
            letters = conversation["letters"]
            allowed = torch.tensor(letter_token_ids(tokenizer, letters), device=logits.device)
            scores = logits[row, len(prompt) - 1].index_select(0, allowed)
            predicted = letters[int(scores.argmax().item())]
            correct += task.evaluate(conversation, predicted)
            total += 1
        done += len(batch)
        if progress is not None:
            progress(name, done, sum(len(b) for b in mine))
    correct, total = _reduce_counts(rt, correct, total)
    return TaskResult(name, "categorical", correct, total)


def evaluate_generative(
    engine: GenerativeEngine,
    tokenizer,
    task: Task,
    rt: EvalRuntime,
    *,
    name: str | None = None,
    num_samples: int = 1,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    top_k: int | None = 50,
    seed: int = 42,
    max_problems: int | None = None,
    progress: ProgressFn | None = None,
) -> TaskResult:
    """pass@num_samples of sampled completions on a generative task."""
    name = name or task.name
    n = problem_count(task, max_problems)
    mine = range(rt.rank, n, rt.world_size)
    correct = total = 0
    for done, index in enumerate(mine, start=1):
        conversation = task.get_example(index)
        prompt = render_for_completion(tokenizer, conversation)
        sequences, _ = engine.generate_batch(
            prompt, num_samples=num_samples, max_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed
        )
        completions = [tokenizer.decode(seq[len(prompt) :]) for seq in sequences]
        correct += int(any(task.evaluate(conversation, text) for text in completions))
        total += 1
        if progress is not None:
            progress(name, done, len(mine))
    correct, total = _reduce_counts(rt, correct, total)
    return TaskResult(name, "generative", correct, total)


def run_chatcore(
    model: torch.nn.Module,
    tokenizer,
    tasks: Mapping[str, Task],
    rt: EvalRuntime,
    *,
    engine: GenerativeEngine | None = None,
    batch_size: int = 8,
    num_samples: int = 1,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    top_k: int | None = 50,
    max_problems: int | None = None,
    progress: ProgressFn | None = None,
    on_result: Callable[[TaskResult], None] | None = None,
) -> ChatCoreReport:
    """Evaluate every task in ``tasks`` (name -> task) and combine them into ChatCORE."""
    results: dict[str, TaskResult] = {}
    for name, task in tasks.items():
        if task.eval_type == "categorical":
            result = evaluate_categorical(
                model, tokenizer, task, rt, name=name, batch_size=batch_size, max_problems=max_problems, progress=progress
            )
        else:
            if engine is None:
                raise ValueError(f"task {name} is generative and needs an engine")
            result = evaluate_generative(
                engine,
                tokenizer,
                task,
                rt,
                name=name,
                num_samples=num_samples,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                max_problems=max_problems,
                progress=progress,
            )
        results[name] = result
        if on_result is not None:
            on_result(result)
    score, reason = chatcore_score(results)
    cat_score, _ = chatcore_score(results, CATEGORICAL_TASKS)
    settings = {
        "batch_size": batch_size,
        "num_samples": num_samples,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "max_problems": max_problems,
        "world_size": rt.world_size,
    }
    return ChatCoreReport(results, score, reason, cat_score, settings)


def report_csv(report: ChatCoreReport) -> str:
    """One row per task plus a final ChatCORE row (empty value when it was not computed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["task", "eval_type", "correct", "total", "accuracy", "baseline", "centered"])
    for result in report.tasks.values():
        writer.writerow(
            [result.name, result.eval_type, result.correct, result.total, f"{result.accuracy:.6f}", result.baseline, f"{result.centered:.6f}"]
        )
    writer.writerow(["ChatCORE", "", "", "", "", "", "" if report.chatcore is None else f"{report.chatcore:.6f}"])
    return buffer.getvalue()


def write_report(
    report: ChatCoreReport, out_dir: str | os.PathLike[str], extra: Mapping[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``chat_eval.csv`` and ``chat_eval.json`` (atomically) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "chat_eval.csv", out_dir / "chat_eval.json"
    atomic_write_bytes(csv_path, report_csv(report).encode("utf-8"))
    payload = {**(extra or {}), **report.to_dict()}
    atomic_write_bytes(json_path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return csv_path, json_path
