"""CORE metric (nanochat_core.evals.core / core_tasks / stages.base_eval): prompts, spans, scoring, labels."""

from __future__ import annotations

import csv
import gzip
import json
import math
import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_dist_worker import perturbed_model, tiny_tokenizer  # noqa: E402

from nanochat_core.evals import core  # noqa: E402
from nanochat_core.evals.core import (  # noqa: E402
    build_example,
    centered_accuracy,
    common_prefix_len,
    common_suffix_len,
    evaluate_core,
    evaluate_task,
    render_lm_prompts,
    render_mc_prompts,
    render_schema_prompts,
    sample_fewshot,
    write_core_results,
)
from nanochat_core.evals.core_tasks import (  # noqa: E402
    CORE_TASK_LABELS,
    CoreTask,
    core_label,
    load_bundle_tasks,
    load_offline_tasks,
    load_task_rows,
    read_jsonl,
    select_tasks,
    tasks_sha256,
)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def offline():
    return load_offline_tasks()


@pytest.fixture(autouse=True)
def _one_thread():
    """2 shared cores: OpenMP spinning across busy cores makes small forwards ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_task(kind: str, shots: int = 0, delim: str = " ", baseline: float = 25.0, label: str = "t") -> CoreTask:
    return CoreTask(
        label=label,
        icl_task_type=kind,
        num_fewshot=shots,
        continuation_delimiter=delim,
        random_baseline=baseline,
        path=Path("unused.jsonl"),
        preshuffled=True,
        source="offline",
    )


# ---- prompts and spans ------------------------------------------------------------------------------
def test_mc_prompt_strings_and_token_span(tok):
    shot = {"query": "Q: sky color?", "choices": ["green", "blue"], "gold": 1}
    item = {"query": "Q: grass color?", "choices": ["green", "red", "purple"], "gold": 0}
    prompts = render_mc_prompts(item, "\nAnswer: ", [shot])
    assert prompts == [
        "Q: sky color?\nAnswer: blue\n\nQ: grass color?\nAnswer: green",
        "Q: sky color?\nAnswer: blue\n\nQ: grass color?\nAnswer: red",
        "Q: sky color?\nAnswer: blue\n\nQ: grass color?\nAnswer: purple",
    ]
    rows = [shot, item]
    ex = build_example(make_task("multiple_choice", shots=1, delim="\nAnswer: "), rows, 1, tok)
    bos = tok.bos_token_id
    head = [bos] + tok.encode("Q: sky color?\nAnswer: blue\n\nQ: grass color?\nAnswer:")
    for j, choice in enumerate(item["choices"]):
        assert list(ex.rows[j]) == head + tok.encode(" " + choice)
        assert ex.starts[j] == len(head) and ex.ends[j] == len(ex.rows[j])
        assert list(ex.rows[j][ex.starts[j] : ex.ends[j]]) == tok.encode(" " + choice)
    assert ex.gold == 0


def test_mc_span_starts_after_shared_choice_tokens(tok):
    """The continuation begins after the longest common *token* prefix, even inside the choices."""
    item = {"query": "Pick one", "choices": ["the cat", "the dog"], "gold": 1}
    ex = build_example(make_task("multiple_choice"), [item], 0, tok)
    head = [tok.bos_token_id] + tok.encode("Pick one the")
    assert ex.starts == (len(head), len(head))
    assert [list(r[s:e]) for r, s, e in zip(ex.rows, ex.starts, ex.ends)] == [tok.encode(" cat"), tok.encode(" dog")]


def test_schema_prompt_strings_and_suffix_span(tok):
    shot = {
        "context_options": ["Anna helped Bea because Anna", "Anna helped Bea because Bea"],
        "continuation": "was kind.",
        "gold": 0,
    }
    item = {
        "context_options": ["The cup hit the jar and the cup", "The cup hit the jar and the jar"],
        "continuation": "broke.",
        "gold": 1,
    }
    prompts = render_schema_prompts(item, " ", [shot])
    assert prompts == [
        "Anna helped Bea because Anna was kind.\n\nThe cup hit the jar and the cup broke.",
        "Anna helped Bea because Anna was kind.\n\nThe cup hit the jar and the jar broke.",
    ]
    ex = build_example(make_task("schema", shots=1), [shot, item], 1, tok)
    tail = tok.encode(" broke.")
    for j, prompt in enumerate(prompts):
        assert list(ex.rows[j]) == [tok.bos_token_id] + tok.encode(prompt)
        assert list(ex.rows[j][ex.starts[j] : ex.ends[j]]) == tail
        assert ex.ends[j] == len(ex.rows[j])
    assert ex.gold == 1


def test_lm_prompts_trim_and_prefix_span(tok):
    shot = {"context": "  Capital of Spain:\n", "continuation": "Madrid"}
    item = {"context": "Capital of France: \t", "continuation": "Paris"}
    without, with_cont = render_lm_prompts(item, "\nAnswer: ", [shot])
    assert without == "Capital of Spain:\nAnswer: Madrid\n\nCapital of France:\nAnswer:"
    assert with_cont == "Capital of Spain:\nAnswer: Madrid\n\nCapital of France:\nAnswer: Paris"
    ex = build_example(make_task("language_modeling", shots=1, delim="\nAnswer: "), [shot, item], 1, tok)
    bos = tok.bos_token_id
    assert len(ex.rows) == 1 and ex.gold is None
    assert list(ex.rows[0]) == [bos] + tok.encode(with_cont)
    assert ex.starts[0] == len([bos] + tok.encode(without))
    assert list(ex.rows[0][ex.starts[0] : ex.ends[0]]) == tok.encode(" Paris")
    zero_shot = render_lm_prompts({"context": " a b c ", "continuation": "d"}, " ")
    assert zero_shot == ("a b c", "a b c d")


def test_common_prefix_and_suffix():
    assert common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2, 3, 5]]) == 2
    assert common_prefix_len([[1, 2], [1, 2, 3]]) == 2
    assert common_prefix_len([[7], [8]]) == 0
    assert common_suffix_len([[9, 1, 2, 3], [8, 2, 3], [2, 3]]) == 2
    assert common_suffix_len([[1, 5], [1, 6]]) == 0


def test_left_crop_keeps_the_span(tok):
    item = {"context": "one two three four five six seven eight nine ten", "continuation": "eleven"}
    task = make_task("language_modeling")
    full = build_example(task, [item], 0, tok)
    limit = len(full.rows[0]) - 4
    cropped = build_example(task, [item], 0, tok, max_seq_len=limit)
    assert list(cropped.rows[0]) == list(full.rows[0][-limit:])
    s, e = cropped.starts[0], cropped.ends[0]
    assert list(cropped.rows[0][s:e]) == list(full.rows[0][full.starts[0] : full.ends[0]])
    with pytest.raises(ValueError):
        build_example(task, [item], 0, tok, max_seq_len=full.ends[0] - full.starts[0])


def test_every_shipped_task_builds_with_nonempty_spans(tok, offline):
    """The LM prefix property holds and every option has a scored span (first 12 rows of each task)."""
    for task in offline:
        rows = load_task_rows(task)[:12]
        for idx in range(len(rows)):
            ex = build_example(task, rows, idx, tok)
            assert len(ex.rows) == core.num_rows(task, rows[idx]) >= 1
            assert all(1 <= s < e == len(r) for r, s, e in zip(ex.rows, ex.starts, ex.ends)), (task.label, idx)


# ---- few-shot sampling ----------------------------------------------------------------------------
def test_fewshot_sampling_reproducible_and_excludes_self():
    for idx in (0, 3, 11):
        picks = sample_fewshot(12, idx, 10)
        assert picks == sample_fewshot(12, idx, 10)
        assert idx not in picks and len(set(picks)) == 10
        assert picks == random.Random(1234 + idx).sample([i for i in range(12) if i != idx], 10)
    assert sample_fewshot(12, 0, 10) != sample_fewshot(12, 1, 10)
    assert sample_fewshot(5, 2, 0) == []


def test_fewshot_rows_in_prompt_and_capped(tok):
    rows = [{"context": f"item {i}", "continuation": f"v{i}"} for i in range(6)]
    task = make_task("language_modeling", shots=3)
    ex = build_example(task, rows, 4, tok)
    shots = [rows[i] for i in sample_fewshot(6, 4, 3)]
    expected = "".join(f"{s['context']} {s['continuation']}\n\n" for s in shots) + "item 4 v4"
    assert list(ex.rows[0]) == [tok.bos_token_id] + tok.encode(expected)
    # fewer other rows than shots: every other row is used once (nanochat would fail here)
    assert core.fewshot_count(make_task("language_modeling", shots=10), 6) == 5
    ex = build_example(make_task("language_modeling", shots=10), rows, 0, tok)
    text = tok.decode(ex.rows[0][1:])
    assert sorted(text.count(f"item {i} ") for i in range(1, 6)) == [1] * 5


def test_fewshot_drawn_from_all_rows_when_max_per_task_is_small(tok, offline):
    """Issue 16 item 12: 10-shot tasks keep 10 shots at max_per_task 8 (drawn over all rows, nanochat's
    full-run draw); where nanochat's own draw is possible (enough evaluated rows) it is kept."""
    task = next(t for t in offline if t.num_fewshot == 10 and t.icl_task_type == "multiple_choice")
    all_rows = load_task_rows(task)
    rows = all_rows[:8]
    assert core.fewshot_pool(task, rows, all_rows) is all_rows
    ex = build_example(task, rows, 3, tok, all_rows=all_rows)
    picks = random.Random(1234 + 3).sample([i for i in range(len(all_rows)) if i != 3], 10)
    expected = render_mc_prompts(rows[3], task.continuation_delimiter, [all_rows[i] for i in picks])
    assert [list(r) for r in ex.rows] == tok.encode(expected, prepend=tok.bos_token_id)
    assert core.fewshot_pool(task, all_rows[:11], all_rows) == all_rows[:11]  # 10 others: nanochat's draw
    model = perturbed_model(tok.vocab_size, depth=1)
    result = evaluate_core(model, tok, [task], device="cpu", max_per_task=8, batch_size=8)
    r = result["tasks"][task.label]
    assert (r["fewshot_used"], r["fewshot_from"], r["n"]) == (10, "all rows", 8)
    assert result["cropped_examples"] == 0 and r["cropped_examples"] == 0


def test_cropped_prompts_are_counted_in_the_result(tok, offline):
    task = next(t for t in offline if t.label == "copa")
    model = perturbed_model(tok.vocab_size, depth=1)
    full = build_example(task, load_task_rows(task)[:3], 0, tok)
    assert not full.cropped
    limit = max(len(r) for r in full.rows) - 2
    assert build_example(task, load_task_rows(task)[:3], 0, tok, max_seq_len=limit).cropped
    result = evaluate_core(model, tok, [task], device="cpu", max_per_task=3, max_seq_len=limit)
    assert 1 <= result["tasks"]["copa"]["cropped_examples"] <= 3
    assert result["cropped_examples"] == result["tasks"]["copa"]["cropped_examples"]
    assert result["max_seq_len"] == limit


# ---- oracle scoring --------------------------------------------------------------------------------
class LookupModel(torch.nn.Module):
    """Fake LM: after any prefix of a 'preferred' token sequence it puts a large logit on that
    sequence's next token; everywhere else the logits are flat."""

    def __init__(self, sequences: list[list[int]], vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.next_tokens: dict[tuple[int, ...], set[int]] = {}
        for seq in sequences:
            for t in range(len(seq) - 1):
                self.next_tokens.setdefault(tuple(seq[: t + 1]), set()).add(seq[t + 1])

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        logits = torch.zeros(B, T, self.vocab_size)
        for b in range(B):
            row = idx[b].tolist()
            for t in range(T):
                for nxt in self.next_tokens.get(tuple(row[: t + 1]), ()):
                    logits[b, t, nxt] = 30.0
        return logits


def preferred_sequences(task: CoreTask, rows: list[dict], tok, choose, all_rows=None) -> list[list[int]]:
    """Token sequences of the prompt the fake model should prefer (`choose(item)` picks the option)."""
    seqs = []
    pool = core.fewshot_pool(task, rows, all_rows)
    for idx, item in enumerate(rows):
        shots = [pool[i] for i in sample_fewshot(len(pool), idx, core.fewshot_count(task, len(pool)))]
        d = task.continuation_delimiter
        if task.icl_task_type == "multiple_choice":
            prompt = render_mc_prompts(item, d, shots)[choose(item)]
        elif task.icl_task_type == "schema":
            prompt = render_schema_prompts(item, d, shots)[choose(item)]
        else:
            prompt = render_lm_prompts(item, d, shots)[1]
        seqs.append(tok.encode(prompt, prepend=tok.bos_token_id))
    return seqs


ORACLE_TASKS = ("copa", "winograd", "lambada_openai", "openbook_qa", "bigbench_qa_wikidata", "commonsense_qa")


@pytest.mark.parametrize("label", ORACLE_TASKS)
def test_oracle_scores_every_task_type_perfectly(label, tok, offline):
    task = next(t for t in offline if t.label == label)
    rows = load_task_rows(task)[:8]
    model = LookupModel(preferred_sequences(task, rows, tok, lambda item: item["gold"]), tok.vocab_size)
    for batch_size in (1, 5):
        correct = evaluate_task(model, tok, task, rows, device="cpu", batch_size=batch_size, share_prefix=False)
        assert correct.tolist() == [1.0] * len(rows)
    # flat logits: greedy predicts token 0, so no language-modeling example can match
    if task.icl_task_type == "language_modeling":
        flat = LookupModel([], tok.vocab_size)
        assert evaluate_task(flat, tok, task, rows, device="cpu").sum().item() == 0


@pytest.mark.parametrize("label", ("copa", "winogrande", "arc_easy"))
def test_model_preferring_choice_zero_scores_fraction_of_gold_zero(label, tok, offline):
    task = next(t for t in offline if t.label == label)
    rows = load_task_rows(task)[:12]
    model = LookupModel(preferred_sequences(task, rows, tok, lambda item: 0), tok.vocab_size)
    result = evaluate_core(model, tok, [task], device="cpu", max_per_task=12, batch_size=4, share_prefix=False)
    assert result["tasks"][label]["fewshot_from"] == "evaluated rows"  # 11 others >= num_fewshot
    frac = sum(1 for r in rows if r["gold"] == 0) / len(rows)
    assert 0 < frac < 1
    assert result["tasks"][label]["accuracy"] == pytest.approx(frac, abs=1e-7)
    b = task.random_baseline / 100
    assert result["tasks"][label]["centered"] == pytest.approx((frac - b) / (1 - b))


def test_oracle_core_is_one_and_aggregate_is_mean_of_centered(tok, offline):
    tasks = [t for t in offline if t.label in ("copa", "winograd", "lambada_openai")]
    seqs = []
    for task in tasks:
        all_rows = load_task_rows(task)
        seqs += preferred_sequences(task, all_rows[:5], tok, lambda item: item["gold"], all_rows)
    oracle = LookupModel(seqs, tok.vocab_size)
    result = evaluate_core(oracle, tok, tasks, device="cpu", max_per_task=5, share_prefix=False)
    assert result["core"] == 1.0
    assert all(r["accuracy"] == 1.0 and r["n"] == 5 for r in result["tasks"].values())
    assert result["examples"] == 15
    assert result["label"] == "CORE-offline-3"


def test_centering_math():
    assert centered_accuracy(0.25, 25) == 0.0
    assert centered_accuracy(1.0, 25) == 1.0
    assert centered_accuracy(0.5, 0) == 0.5
    assert centered_accuracy(0.81, 62) == pytest.approx((0.81 - 0.62) / 0.38)
    assert centered_accuracy(0.0, 50) == -1.0


def test_shared_prefix_and_batching_match_full_rows(tok, offline):
    """KV-cached shared prefix and multi-example batches give nanochat's full-row result."""
    model = perturbed_model(tok.vocab_size, depth=1, scale=0.3)
    for label in ("arc_easy", "copa", "lambada_openai", "winogrande"):
        task = next(t for t in offline if t.label == label)
        rows = load_task_rows(task)[:6]
        ref = evaluate_task(model, tok, task, rows, device="cpu", batch_size=1, share_prefix=False)
        for bs, share in ((1, True), (8, True), (8, False)):
            got = evaluate_task(model, tok, task, rows, device="cpu", batch_size=bs, share_prefix=share)
            assert torch.equal(got, ref), (label, bs, share)
    # the losses themselves agree, not just the argmin
    task = next(t for t in offline if t.label == "arc_easy")
    ex = build_example(task, load_task_rows(task)[:6], 2, tok)
    shared = core._mc_losses_shared_prefix(model, ex, pad_id=tok.bos_token_id, device="cpu")
    full = []
    with torch.inference_mode():
        for row, s, e in zip(ex.rows, ex.starts, ex.ends):
            logits = model(torch.tensor([list(row)]))[0]
            full.append(torch.nn.functional.cross_entropy(logits[s - 1 : e - 1], torch.tensor(row[s:e])).item())
    assert shared == pytest.approx(full, rel=1e-4)


def test_nan_loss_and_ties_follow_python_min():
    assert core._first_argmin([2.0, 1.0, 1.0]) == 1
    assert core._first_argmin([math.nan, 0.5]) == 0
    assert core._first_argmin([0.7, math.nan, 0.5]) == 2


# ---- task data and labels ----------------------------------------------------------------------------
def test_offline_subset_and_label(offline):
    assert len(offline) == 18 and offline.source == "offline"
    assert set(offline.missing) == {"hellaswag_zeroshot", "hellaswag", "squad", "coqa"}
    assert offline.label == "CORE-offline-18" and offline.label != "CORE"
    assert [t.label for t in offline] == [label for label in CORE_TASK_LABELS if label not in offline.missing]
    jeopardy = next(t for t in offline if t.label == "jeopardy")
    assert jeopardy.icl_task_type == "language_modeling" and jeopardy.num_fewshot == 10
    assert jeopardy.continuation_delimiter == "\nAnswer: "
    assert {t.label: t.random_baseline for t in offline}["boolq"] == 62
    # shipped rows are already in nanochat's shuffled order: used as they are, never reshuffled
    assert load_task_rows(jeopardy) == read_jsonl(jeopardy.path)
    assert select_tasks(offline, ["copa"]).label == "CORE-offline-1"


def test_core_label_only_for_all_22_bundle_tasks(offline):
    bundle_tasks = [make_task("schema", label=label) for label in CORE_TASK_LABELS]
    bundle_tasks = [CoreTask(**{**t.__dict__, "source": "bundle"}) for t in bundle_tasks]
    assert core_label(bundle_tasks) == "CORE"
    assert core_label(bundle_tasks[:-1]) == "CORE-subset-21"
    assert core_label(list(offline)) == "CORE-offline-18"


def _write_bundle(root: Path, rows: list[dict]) -> None:
    (root / "eval_data" / "world_knowledge").mkdir(parents=True)
    (root / "eval_data" / "world_knowledge" / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "core.yaml").write_text(
        "icl_tasks:\n"
        "- label: mini_lm\n"
        "  dataset_uri: world_knowledge/mini.jsonl\n"
        "  num_fewshot: [3, 5]\n"
        "  icl_task_type: language_modeling\n"
        "- label: mini_lm_answer\n"
        "  dataset_uri: world_knowledge/mini.jsonl\n"
        "  num_fewshot: [0]\n"
        "  icl_task_type: language_modeling\n"
        "  continuation_delimiter: \"\\nAnswer: \"\n"
    )
    (root / "eval_meta_data.csv").write_text(
        "Eval Task,Task Category,Random baseline\nmini_lm,world knowledge,0\nmini_lm_answer,world knowledge,12.5\n"
    )


def test_bundle_layout_is_parsed_and_rows_shuffled_with_1337(tmp_path):
    rows = [{"context": f"c{i}", "continuation": f"x{i}"} for i in range(30)]
    _write_bundle(tmp_path, rows)
    ts = load_bundle_tasks(tmp_path)
    assert ts.source == "bundle" and [t.label for t in ts] == ["mini_lm", "mini_lm_answer"]
    a, b = ts.tasks
    assert (a.num_fewshot, a.continuation_delimiter, a.random_baseline) == (3, " ", 0.0)
    assert (b.num_fewshot, b.continuation_delimiter, b.random_baseline) == (0, "\nAnswer: ", 12.5)
    expected = list(rows)
    random.Random(1337).shuffle(expected)
    assert load_task_rows(a) == expected and expected != rows
    assert ts.label == "CORE-subset-2" and len(ts.missing) == 22
    assert tasks_sha256(ts.tasks) != tasks_sha256(ts.tasks[:1])


def test_results_files(tmp_path, tok, offline):
    tasks = [t for t in offline if t.label in ("copa", "winograd")]
    model = perturbed_model(tok.vocab_size, depth=1)
    result = evaluate_core(model, tok, tasks, device="cpu", max_per_task=4)
    csv_path, json_path = write_core_results(result, tmp_path / "out")
    table = list(csv.reader(csv_path.open()))
    assert table[0] == ["Task", "Accuracy", "Centered", "N"]
    assert [r[0] for r in table[1:]] == ["copa", "winograd", "CORE-offline-2"]
    assert float(table[-1][2]) == pytest.approx(result["core"], abs=1e-6)
    assert float(table[1][1]) == pytest.approx(result["tasks"]["copa"]["accuracy"], abs=1e-6)
    assert json.loads(json_path.read_text())["label"] == "CORE-offline-2"


def test_shipped_data_copied_verbatim(offline):
    shared = Path("/work/shared/data/core")
    if not shared.is_dir():
        pytest.skip("reference data directory not present")
    for task in offline:
        assert task.path.read_bytes() == (shared / task.path.name).read_bytes()
    with gzip.open(next(iter(offline)).path, "rt") as fh:
        assert fh.readline().strip()


# ---- the stage ----------------------------------------------------------------------------------------
def test_base_eval_stage_offline(tmp_path, tok):
    from nanochat_core.checkpoint import checkpoint_dir, save_checkpoint
    from nanochat_core.common import Runtime
    from nanochat_core.config import BaseEvalConfig, WorkloadConfig
    from nanochat_core.observer import ListObserver
    from nanochat_core.stages import base_eval

    artifacts = tmp_path / "run" / "artifacts"
    tok.save(artifacts / "tokenizer")
    model = perturbed_model(tok.vocab_size, depth=1)
    save_checkpoint(checkpoint_dir(artifacts, "base"), 3, model=model, meta={})
    obs = ListObserver()
    rt = Runtime(device=torch.device("cpu"), observer=obs, artifacts_dir=artifacts, cache_dir=tmp_path / "cache")
    cfg = WorkloadConfig(preset="test", base_eval=BaseEvalConfig(core_max_per_task=1, bundle="offline", batch_size=4))
    out = base_eval.run(cfg, rt)
    assert out["core_label"] == "CORE-offline-18" and len(out["core_tasks"]) == 18
    assert out["examples"] == 18 and -2 <= out["core"] <= 1
    assert out["eval_data_sha256"] == tasks_sha256(load_offline_tasks().tasks)
    assert [s["prompt"] for s in out["samples"]] == list(base_eval.SAMPLE_PROMPTS)
    phase = tmp_path / "run" / "phases" / "base_eval"
    assert (phase / "core.csv").is_file()
    assert json.loads((phase / "core.json").read_text())["label"] == "CORE-offline-18"
    evals = obs.of("eval")
    assert evals[-1]["value"] == "core" and evals[-1]["metadata"]["label"] == "CORE-offline-18"
    assert evals[-1]["metadata"]["value"] == out["core"]
    assert [e["value"] for e in obs.of("progress")] == list(range(1, 19))
    with pytest.raises(ValueError):
        base_eval.resolve_tasks("nope", rt)
