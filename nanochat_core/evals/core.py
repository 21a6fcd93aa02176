"""CORE scoring of a base model (spec section 7), with nanochat's exact per-example semantics.

Per task: rows in nanochat's order (see :mod:`nanochat_core.evals.core_tasks`), cut to the first
``max_per_task`` when > 0. For example ``idx`` the few-shot examples are
``random.Random(1234 + idx).sample([i for i in range(n) if i != idx], k)`` over the evaluated rows
(n of them), as nanochat draws them. When those hold fewer than ``k`` other rows (a small
``max_per_task``, where nanochat's ``sample`` raises), the draw is over all ``n`` rows of the task
instead, which is nanochat's draw for a full run, so every example still gets ``k`` shots
(:func:`fewshot_pool`; the result says which per task in ``fewshot_from``).

Prompts (shots are rendered like the query with its gold answer, each followed by a blank line):

- multiple_choice: ``shots + query + delim + choice`` per choice; the scored continuation is what
  follows the longest common token prefix of the choices' prompts.
- schema: ``shots + context_option + delim + continuation`` per option (a shot uses its gold
  option); the scored span is the longest common token suffix.
- language_modeling: contexts are whitespace-trimmed; the prompt without the continuation is
  trimmed too (so its trailing delimiter space cannot merge into the next token) and must be a
  token prefix of the prompt with it; correct iff greedy argmax reproduces every continuation token.

MC/schema predict the option with the lowest mean cross-entropy over its span (first one on ties,
Python ``min`` semantics, NaN included). Every prompt starts with BOS; rows are right-padded with
BOS (causal attention makes padding invisible to real positions). Rows longer than the model can
address are cropped from the left, shifting the span with them; nanochat never crops its own model
(its rotary table covers 10x seq_len, and a longer prompt stops it), and neither does this unless a
prompt exceeds that capacity; the result counts such examples per task (``cropped_examples``).

Batching: one forward pass takes whole examples (all their choices) up to ``batch_size`` rows;
an example with more rows than that gets a pass of its own, so ``batch_size=1`` reproduces
nanochat's one-example-per-pass shapes exactly (with ``share_prefix=False``; by default a
multiple-choice example runs its shared few-shot prefix once through a KV cache and then only the
choices' continuations: the same probabilities, a fraction of the compute). The grouping is
computed from the global example order and groups are strided across ranks, so results do not
depend on the number of ranks.
Per-example correctness is all-reduced (SUM); centered = (acc - b) / (1 - b), b = baseline% / 100;
the aggregate is the unweighted mean of the centered values of the tasks that ran.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from nanochat_core.atomic import atomic_write_text
from nanochat_core.evals.core_tasks import CoreTask, core_label, load_task_rows

FEWSHOT_SEED_BASE = 1234
SHOT_SEPARATOR = "\n\n"


# ---- prompts --------------------------------------------------------------------------------------
def render_mc_prompts(item: dict, delimiter: str, shots: Sequence[dict] = ()) -> list[str]:
    """One prompt per choice: shots ("query + delim + gold choice" + blank line) + query + delim + choice."""
    prefix = "".join(f"{s['query']}{delimiter}{s['choices'][s['gold']]}{SHOT_SEPARATOR}" for s in shots)
    return [f"{prefix}{item['query']}{delimiter}{choice}" for choice in item["choices"]]


def render_schema_prompts(item: dict, delimiter: str, shots: Sequence[dict] = ()) -> list[str]:
    """One prompt per context option, all ending in the same continuation."""
    prefix = "".join(
        f"{s['context_options'][s['gold']]}{delimiter}{s['continuation']}{SHOT_SEPARATOR}" for s in shots
    )
    return [f"{prefix}{context}{delimiter}{item['continuation']}" for context in item["context_options"]]


def render_lm_prompts(item: dict, delimiter: str, shots: Sequence[dict] = ()) -> tuple[str, str]:
    """(prompt without continuation, prompt with it); contexts trimmed, the first prompt trimmed."""
    prefix = "".join(f"{s['context'].strip()}{delimiter}{s['continuation']}{SHOT_SEPARATOR}" for s in shots)
    head = f"{prefix}{item['context'].strip()}{delimiter}"
    return head.strip(), head + item["continuation"]


def sample_fewshot(num_rows: int, idx: int, k: int) -> list[int]:
    """Indices of the k few-shot examples of example `idx`: Random(1234 + idx).sample of the others."""
    if k <= 0:
        return []
    others = [i for i in range(num_rows) if i != idx]
    return random.Random(FEWSHOT_SEED_BASE + idx).sample(others, k)


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by every sequence."""
    shortest = min(len(s) for s in seqs)
    for i in range(shortest):
        tok = seqs[0][i]
        if any(s[i] != tok for s in seqs[1:]):
            return i
    return shortest


def common_suffix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token suffix shared by every sequence."""
    return common_prefix_len([list(reversed(s)) for s in seqs])


# ---- examples -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """The token rows of one example and, per row, the span [start, end) that is scored."""

    rows: tuple[tuple[int, ...], ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    gold: int | None  # None for language modeling
    shared_prefix: bool = False  # True when every row shares its first `starts[0]` tokens (multiple choice)
    cropped: bool = False  # True when a row was longer than the model can address and lost its left end


def num_rows(task: CoreTask, item: dict) -> int:
    if task.icl_task_type == "multiple_choice":
        return len(item["choices"])
    if task.icl_task_type == "schema":
        return len(item["context_options"])
    return 1


def fewshot_count(task: CoreTask, num_examples: int) -> int:
    """Shots actually used when drawing from `num_examples` rows: the task's count, capped by the other
    rows available (only a task with fewer rows in total than that needs the cap)."""
    return max(0, min(task.num_fewshot, num_examples - 1))


def fewshot_pool(task: CoreTask, rows: Sequence[dict], all_rows: Sequence[dict] | None = None) -> Sequence[dict]:
    """The rows few-shot examples are drawn from: the evaluated `rows` (nanochat's draw), or
    `all_rows` of the task when `rows` hold fewer than `num_fewshot` other rows (nanochat would stop).

    `rows` must be the first `len(rows)` of `all_rows`, so an example's index means the same row in both.
    """
    if all_rows is None or len(rows) - 1 >= task.num_fewshot:
        return rows
    return all_rows


def build_example(
    task: CoreTask,
    rows: Sequence[dict],
    idx: int,
    tokenizer: Any,
    max_seq_len: int | None = None,
    all_rows: Sequence[dict] | None = None,
) -> Example:
    """Render, tokenize (BOS first) and locate the scored span of example `idx` of `rows`
    (shots from :func:`fewshot_pool`)."""
    item = rows[idx]
    pool = fewshot_pool(task, rows, all_rows)
    shots = [pool[i] for i in sample_fewshot(len(pool), idx, fewshot_count(task, len(pool)))]
    delim = task.continuation_delimiter
    bos = tokenizer.bos_token_id
    if task.icl_task_type == "multiple_choice":
        toks = tokenizer.encode(render_mc_prompts(item, delim, shots), prepend=bos)
        start = common_prefix_len(toks)
        starts, ends = [start] * len(toks), [len(t) for t in toks]
        gold = int(item["gold"])
    elif task.icl_task_type == "schema":
        toks = tokenizer.encode(render_schema_prompts(item, delim, shots), prepend=bos)
        suffix = common_suffix_len(toks)
        starts, ends = [len(t) - suffix for t in toks], [len(t) for t in toks]
        gold = int(item["gold"])
    else:
        without, with_cont = tokenizer.encode(list(render_lm_prompts(item, delim, shots)), prepend=bos)
        start, end = len(without), len(with_cont)
        if start >= end or with_cont[:start] != without:
            raise ValueError(
                f"task {task.label} example {idx}: the prompt without its continuation does not tokenize "
                "to a strict prefix of the prompt with it"
            )
        toks, starts, ends, gold = [with_cont], [start], [end], None
    cropped = max_seq_len is not None and max(len(t) for t in toks) > max_seq_len
    if cropped:
        toks, starts, ends = _crop_left(toks, starts, ends, max_seq_len, task.label, idx)
    shared = task.icl_task_type == "multiple_choice" and len(set(starts)) == 1
    return Example(tuple(map(tuple, toks)), tuple(starts), tuple(ends), gold, shared, cropped)


def _crop_left(toks, starts, ends, max_len: int, label: str, idx: int):
    out_t, out_s, out_e = [], [], []
    for t, s, e in zip(toks, starts, ends):
        cut = max(0, len(t) - max_len)
        if cut and s - cut < 1:
            raise ValueError(f"task {label} example {idx}: continuation does not fit in {max_len} positions")
        out_t.append(t[cut:])
        out_s.append(s - cut)
        out_e.append(e - cut)
    return out_t, out_s, out_e


def model_max_len(model: torch.nn.Module) -> int | None:
    """Positions the model can address: its rotary table length (10x seq_len), else config.seq_len."""
    inner = getattr(model, "_orig_mod", model)
    cos = getattr(inner, "cos", None)
    if isinstance(cos, torch.Tensor) and cos.dim() >= 2:
        return int(cos.size(1))
    config = getattr(inner, "config", None)
    return getattr(config, "seq_len", None)


# ---- scoring --------------------------------------------------------------------------------------
def _first_argmin(values: Sequence[float]) -> int:
    """Index Python's `values.index(min(values))` would give (first minimum; NaN never replaces)."""
    best = 0
    for i in range(1, len(values)):
        if values[i] < values[best]:
            best = i
    return best


def _mc_losses_shared_prefix(
    model: torch.nn.Module, ex: Example, *, pad_id: int, device: torch.device | str
) -> list[float]:
    """Mean continuation losses of a multiple-choice example, computing the shared prefix once.

    The rows share their first `start` tokens (that is how the span is defined), so the prefix is
    run once into a KV cache, broadcast to every choice, and only the continuations are run on top.
    Mathematically identical to a full forward of each row; only float rounding can differ.
    """
    from nanochat_core.kv_cache import KVCache

    inner = getattr(model, "_orig_mod", model)
    cfg = inner.config
    start = ex.starts[0]
    cont_lens = [e - start for e in ex.ends]
    width = max(cont_lens)
    dev = torch.device(device)
    dtype = torch.get_autocast_dtype(dev.type) if torch.is_autocast_enabled(dev.type) else torch.float32
    shape = {"num_heads": cfg.n_kv_head, "head_dim": cfg.head_dim, "num_layers": cfg.n_layer}
    shape.update(device=dev, dtype=dtype)
    prefix_cache = KVCache(batch_size=1, seq_len=start, **shape)
    prefix = torch.tensor([ex.rows[0][:start]], dtype=torch.long, device=dev)
    last_logits = model(prefix, kv_cache=prefix_cache)[0, -1].float()  # predicts each row's first token
    targets = torch.full((len(ex.rows), max(width, 1)), pad_id, dtype=torch.long)
    for j, row in enumerate(ex.rows):
        targets[j, : cont_lens[j]] = torch.tensor(row[start:], dtype=torch.long)
    targets = targets.to(dev)
    if width > 1:
        cache = KVCache(batch_size=len(ex.rows), seq_len=start + width, **shape)
        cache.prefill_from(prefix_cache)
        cont_logits = model(targets[:, : width - 1], kv_cache=cache).float()
    out = []
    for j, n in enumerate(cont_lens):
        if n == 0:
            out.append(float("nan"))  # empty span: the mean of nothing, as a plain forward gives
            continue
        logits = last_logits[None]
        if n > 1:
            logits = torch.cat([logits, cont_logits[j, : n - 1]], dim=0)
        out.append(F.cross_entropy(logits, targets[j, :n], reduction="none").mean().item())
    return out


@torch.inference_mode()
def score_examples(
    model: torch.nn.Module,
    examples: Sequence[Example],
    *,
    pad_id: int,
    device: torch.device | str,
    autocast_ctx: contextlib.AbstractContextManager | None = None,
    share_prefix: bool = False,
) -> list[bool]:
    """Run every row of `examples` in one forward pass; return per-example correctness.

    With `share_prefix`, multiple-choice examples are scored one at a time by
    :func:`_mc_losses_shared_prefix` instead (the rest still share one pass).
    """
    results: dict[int, bool] = {}
    if share_prefix:
        with autocast_ctx if autocast_ctx is not None else contextlib.nullcontext():
            for k, ex in enumerate(examples):
                if ex.shared_prefix and len(ex.rows) > 1:
                    losses = _mc_losses_shared_prefix(model, ex, pad_id=pad_id, device=device)
                    results[k] = _first_argmin(losses) == ex.gold
    rest = [ex for k, ex in enumerate(examples) if k not in results]
    if rest:
        rest_results = iter(_score_full_rows(model, rest, pad_id=pad_id, device=device, autocast_ctx=autocast_ctx))
        for k in range(len(examples)):
            if k not in results:
                results[k] = next(rest_results)
    return [results[k] for k in range(len(examples))]


def _score_full_rows(
    model: torch.nn.Module,
    examples: Sequence[Example],
    *,
    pad_id: int,
    device: torch.device | str,
    autocast_ctx: contextlib.AbstractContextManager | None,
) -> list[bool]:
    """Every row of every example in one right-padded forward pass (nanochat's way)."""
    rows = [r for ex in examples for r in ex.rows]
    width = max(len(r) for r in rows)
    batch = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    batch = batch.to(device)
    with autocast_ctx if autocast_ctx is not None else contextlib.nullcontext():
        logits = model(batch)
    logits = logits.float()

    out: list[bool] = []
    row = 0
    for ex in examples:
        if ex.gold is None:  # language modeling: exact greedy match over the continuation
            s, e = ex.starts[0], ex.ends[0]
            predicted = logits[row, s - 1 : e - 1].argmax(dim=-1)
            out.append(bool(torch.equal(predicted, batch[row, s:e])))
        else:
            mean_losses = []
            for j in range(len(ex.rows)):
                s, e = ex.starts[j], ex.ends[j]
                losses = F.cross_entropy(logits[row + j, s - 1 : e - 1], batch[row + j, s:e], reduction="none")
                mean_losses.append(losses.mean().item())
            out.append(_first_argmin(mean_losses) == ex.gold)
        row += len(ex.rows)
    return out


def group_examples(task: CoreTask, rows: Sequence[dict], batch_size: int) -> list[list[int]]:
    """Consecutive example indices packed into forward passes of at most `batch_size` rows."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for idx, item in enumerate(rows):
        n = num_rows(task, item)
        if current and used + n > batch_size:
            groups.append(current)
            current, used = [], 0
        current.append(idx)
        used += n
    if current:
        groups.append(current)
    return groups


def evaluate_task(
    model: torch.nn.Module,
    tokenizer: Any,
    task: CoreTask,
    rows: Sequence[dict],
    *,
    device: torch.device | str,
    batch_size: int = 1,
    rank: int = 0,
    world_size: int = 1,
    autocast_ctx: contextlib.AbstractContextManager | None = None,
    max_seq_len: int | None = None,
    share_prefix: bool = True,
    all_rows: Sequence[dict] | None = None,
) -> torch.Tensor:
    """Per-example correctness (float 0/1 over `rows`), summed across ranks when distributed."""
    return evaluate_task_detailed(
        model,
        tokenizer,
        task,
        rows,
        device=device,
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
        autocast_ctx=autocast_ctx,
        max_seq_len=max_seq_len,
        share_prefix=share_prefix,
        all_rows=all_rows,
    )[0]


def evaluate_task_detailed(
    model: torch.nn.Module,
    tokenizer: Any,
    task: CoreTask,
    rows: Sequence[dict],
    *,
    device: torch.device | str,
    batch_size: int = 1,
    rank: int = 0,
    world_size: int = 1,
    autocast_ctx: contextlib.AbstractContextManager | None = None,
    max_seq_len: int | None = None,
    share_prefix: bool = True,
    all_rows: Sequence[dict] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(correctness, cropped) per example of `rows`, float 0/1 each, summed across ranks."""
    flags = torch.zeros(2, len(rows), dtype=torch.float32, device=device)
    correct, cropped = flags[0], flags[1]
    groups = group_examples(task, rows, max(1, batch_size))
    for group in groups[rank::world_size]:
        examples = [build_example(task, rows, idx, tokenizer, max_seq_len, all_rows) for idx in group]
        results = score_examples(
            model,
            examples,
            pad_id=tokenizer.bos_token_id,
            device=device,
            autocast_ctx=autocast_ctx,
            share_prefix=share_prefix,
        )
        for idx, ok, ex in zip(group, results, examples):
            correct[idx] = float(ok)
            cropped[idx] = float(ex.cropped)
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(flags, op=dist.ReduceOp.SUM)
    return flags[0], flags[1]


def centered_accuracy(accuracy: float, random_baseline_percent: float) -> float:
    """(acc - b) / (1 - b) with b the random baseline as a fraction."""
    b = random_baseline_percent / 100.0
    return (accuracy - b) / (1.0 - b)


def evaluate_core(
    model: torch.nn.Module,
    tokenizer: Any,
    tasks: Sequence[CoreTask],
    *,
    device: torch.device | str,
    max_per_task: int = -1,
    batch_size: int = 1,
    rank: int = 0,
    world_size: int = 1,
    autocast_ctx: Callable[[], contextlib.AbstractContextManager] | contextlib.AbstractContextManager | None = None,
    max_seq_len: int | None = None,
    share_prefix: bool = True,
    on_task_done: Callable[[str, dict[str, Any], int, int], None] | None = None,
) -> dict[str, Any]:
    """Score every task; return per-task accuracy/centered/n, the aggregate and its label.

    `autocast_ctx` may be a context manager factory (e.g. `rt.autocast`) or a reusable context
    manager; `max_seq_len` defaults to what the model can address (:func:`model_max_len`).
    `share_prefix` scores multiple-choice examples by running their common prefix once (same math,
    much less compute for few-shot prompts); False runs every full row like nanochat.
    `on_task_done(label, task_result, done, total)` is called after each task on every rank.
    """
    tasks = list(tasks)
    if not tasks:
        raise ValueError("evaluate_core needs at least one task")
    if max_seq_len is None:
        max_seq_len = model_max_len(model)
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    per_task: dict[str, dict[str, Any]] = {}
    examples = 0
    for done, task in enumerate(tasks, start=1):
        t_task = time.perf_counter()
        all_rows = load_task_rows(task)
        rows = all_rows[:max_per_task] if max_per_task > 0 else all_rows
        if not rows:
            raise ValueError(f"task {task.label} has no rows")
        pool = fewshot_pool(task, rows, all_rows)
        ctx = autocast_ctx() if callable(autocast_ctx) else autocast_ctx
        correct, cropped = evaluate_task_detailed(
            model,
            tokenizer,
            task,
            rows,
            device=device,
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
            autocast_ctx=ctx,
            max_seq_len=max_seq_len,
            share_prefix=share_prefix,
            all_rows=all_rows,
        )
        accuracy = correct.mean().item()
        per_task[task.label] = {
            "accuracy": accuracy,
            "centered": centered_accuracy(accuracy, task.random_baseline),
            "n": len(rows),
            "correct": int(correct.sum().item()),
            "random_baseline": task.random_baseline,
            "icl_task_type": task.icl_task_type,
            "num_fewshot": task.num_fewshot,
            "fewshot_used": fewshot_count(task, len(pool)),
            "fewshot_from": "evaluated rows" if pool is rows else "all rows",
            "cropped_examples": int(cropped.sum().item()),
            "seconds": time.perf_counter() - t_task,
        }
        examples += len(rows)
        if on_task_done is not None:
            on_task_done(task.label, per_task[task.label], done, len(tasks))
    if was_training:
        model.train()
    centered = [r["centered"] for r in per_task.values()]
    return {
        "label": core_label(tasks),
        "core": sum(centered) / len(centered),
        "tasks": per_task,
        "num_tasks": len(tasks),
        "examples": examples,
        "max_per_task": max_per_task,
        "max_seq_len": max_seq_len,
        "cropped_examples": sum(r["cropped_examples"] for r in per_task.values()),
        "sources": sorted({t.source for t in tasks}),
        "seconds": time.perf_counter() - t0,
    }


# ---- output ---------------------------------------------------------------------------------------
def core_csv_text(result: dict[str, Any]) -> str:
    """Task,Accuracy,Centered,N rows and a final aggregate row named by the result's label."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Task", "Accuracy", "Centered", "N"])
    for label, r in result["tasks"].items():
        writer.writerow([label, f"{r['accuracy']:.6f}", f"{r['centered']:.6f}", r["n"]])
    writer.writerow([result["label"], "", f"{result['core']:.6f}", result["examples"]])
    return buf.getvalue()


def write_core_results(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write `core.csv` and `core.json` into `out_dir` (atomically); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "core.csv", out_dir / "core.json"
    atomic_write_text(csv_path, core_csv_text(result))
    atomic_write_text(json_path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return csv_path, json_path



