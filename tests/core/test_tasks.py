"""Task framework, the shipped task data, GSM8K/spelling/HumanEval formats and the offline mixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from nanochat_core.chat_format import conversation_messages
from nanochat_core.tasks import (
    ARC,
    EVAL_TASK_NAMES,
    GSM8K,
    MMLU,
    HumanEval,
    Identity,
    SimpleSpelling,
    SpellingBee,
    Task,
    TaskMixture,
    eval_task,
    mixtures,
    render_multiple_choice,
    shuffled_order,
)
from nanochat_core.tasks.gsm8k import extract_final_answer, solution_parts
from nanochat_core.tasks.humaneval import build_program, extract_code
from nanochat_core.tasks.spelling import QUESTION_TEMPLATES


class Numbers(Task):
    """A tiny in-memory task: example i says the number i."""

    def __init__(self, n: int, tag: str, **kw) -> None:
        super().__init__(**kw)
        self.n, self.tag = n, tag

    def num_rows(self) -> int:
        return self.n

    def row_conversation(self, index: int) -> dict:
        return {"messages": [{"role": "user", "content": self.tag}, {"role": "assistant", "content": str(index)}]}

    def evaluate(self, conversation, completion) -> int:
        return int(completion == conversation["messages"][-1]["content"])


def answers(task) -> list[str]:
    return [task.get_example(i)["messages"][-1]["content"] for i in range(task.num_examples())]


def test_slicing():
    assert answers(Numbers(10, "x", start=2, stop=8, step=2)) == ["2", "4", "6"]
    assert Numbers(10, "x", stop=100).num_examples() == 10
    with pytest.raises(IndexError):
        Numbers(10, "x", stop=3).get_example(3)
    with pytest.raises(ValueError):
        Numbers(10, "x", step=0)


def test_mixture_is_deterministic_and_covers_every_row():
    a, b = Numbers(5, "a"), Numbers(7, "b")
    mix = TaskMixture([a, b, a])  # a twice = two epochs
    assert mix.num_examples() == 17
    seen = Counter((mix.get_example(i)["messages"][0]["content"], mix.get_example(i)["messages"][1]["content"]) for i in range(17))
    assert seen == Counter({**{("a", str(i)): 2 for i in range(5)}, **{("b", str(i)): 1 for i in range(7)}})
    again = TaskMixture([a, b, a], seed=42)
    assert [again.source_of(i) for i in range(17)] == [mix.source_of(i) for i in range(17)]
    assert [TaskMixture([a, b, a], seed=7).source_of(i) for i in range(17)] != [mix.source_of(i) for i in range(17)]
    assert [mix.source_of(i) for i in range(17)] != sorted(mix.source_of(i) for i in range(17))  # actually shuffled


def test_shuffle_matches_numpy_permutation_and_is_reproducible():
    order = shuffled_order(100)
    assert order == list(np.random.default_rng(42).permutation(100))
    assert sorted(order) == list(range(100)) and order != list(range(100))
    assert shuffled_order(100) == order and shuffled_order(100, seed=None) == list(range(100))
    first = [ARC("ARC-Easy", source="shipped").get_example(i) for i in range(3)]
    second = [ARC("ARC-Easy", source="shipped").get_example(i) for i in range(3)]
    assert first == second


def test_multiple_choice_text_exact():
    text = render_multiple_choice("What is 2+2?", ["3", "4", "five"], ["A", "B", "C"])
    assert text == (
        "Multiple Choice question: What is 2+2?\n- 3=A\n- 4=B\n- five=C\n\nRespond only with the letter of the correct answer."
    )


def test_shipped_mc_tasks():
    arc = ARC("ARC-Challenge", source="shipped")
    assert arc.num_examples() == 1172 and arc.eval_type == "categorical"
    conv = arc.get_example(0)
    assert conv["messages"][1]["content"] in conv["letters"]
    assert arc.evaluate(conv, conv["messages"][1]["content"]) == 1
    wrong = next(x for x in conv["letters"] if x != conv["messages"][1]["content"])
    assert arc.evaluate(conv, wrong) == 0
    mmlu = MMLU("all", "dev", source="shipped")
    assert mmlu.num_examples() == 285 and mmlu.get_example(5)["letters"] == ["A", "B", "C", "D"]
    with pytest.raises(ValueError, match="not shipped"):
        MMLU("auxiliary_train", "train", source="shipped")
    with pytest.raises(ValueError, match="test split"):
        ARC("ARC-Easy", "train", source="shipped")


def test_eval_tasks_shipped_sizes():
    sizes = {name: eval_task(name, source="shipped").num_examples() for name in EVAL_TASK_NAMES}
    assert sizes == {"ARC-Easy": 2376, "ARC-Challenge": 1172, "MMLU": 14042, "GSM8K": 1319, "HumanEval": 164, "SpellingBee": 256}
    assert eval_task("MMLU", source="shipped", stop=10).num_examples() == 10


def test_gsm8k_solution_parts():
    solution = "She has 3 + 4 = <<3+4=7>>7 apples.\nHalf is 7/2 = <<7/2=3.5>>3.5\n#### 3.5"
    assert solution_parts(solution) == [
        {"type": "text", "text": "She has 3 + 4 = "},
        {"type": "python", "text": "3+4"},
        {"type": "python_output", "text": "7"},
        {"type": "text", "text": "7 apples.\nHalf is 7/2 = "},
        {"type": "python", "text": "7/2"},
        {"type": "python_output", "text": "3.5"},
        {"type": "text", "text": "3.5\n#### 3.5"},
    ]
    assert solution_parts("no tools\n#### 5") == [{"type": "text", "text": "no tools\n#### 5"}]


def test_gsm8k_shipped_and_scoring():
    task = GSM8K("main", "test", source="shipped")
    conv = task.get_example(0)
    parts = conv["messages"][1]["content"]
    assert parts[-1]["type"] == "text" and "####" in parts[-1]["text"]
    assert "".join(p["text"] for p in parts if p["type"] != "python").count("<<") == 0
    answer = extract_final_answer(parts[-1]["text"])
    assert task.evaluate(conv, f"blah blah\n#### {answer}") == 1
    assert task.evaluate(conv, "I don't know") == 0
    assert task.evaluate(conv, f"#### {int(answer) + 1}") == 0
    assert extract_final_answer("so #### 1,234 dollars") == "1234"
    assert extract_final_answer("#### -7") == "-7"
    assert GSM8K("main", "train", source="shipped").num_examples() == 2000


# ORIG's answer rule (issue 16 item 9): "#### " + [-]?[0-9.,]+ , commas removed, compared as text.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 18", "18"),
        ("so\n#### 1,234 dollars", "1234"),
        ("#### -5", "-5"),
        ("#### 3.5", "3.5"),
        ("#### 18.", "18."),  # the trailing dot is kept, so it does not equal "18"
        ("####18", None),  # no space
        ("####-5", None),
        ("####  18", None),  # two spaces
        ("#### $18", None),
        ("#### .", "."),
        ("#### 1 #### 2", "1"),  # the first marker wins
        ("no marker 18", None),
    ],
)
def test_final_answer_extraction_matches_orig(text, expected):
    assert extract_final_answer(text) == expected


def test_hash_answer_scoring_rejects_what_orig_rejects():
    gsm = GSM8K("main", "test", source="shipped")
    conv = gsm.get_example(0)
    ref = extract_final_answer(conv["messages"][1]["content"][-1]["text"])
    assert gsm.evaluate(conv, f"#### {ref}") == 1
    for wrong in (f"####{ref}", f"#### {ref}.", f"####  {ref}"):
        assert gsm.evaluate(conv, wrong) == 0, wrong
    bee = SpellingBee(4, "test")
    conv = bee.get_example(0)
    ref = extract_final_answer(conv["messages"][1]["content"][-1]["text"])
    assert bee.evaluate(conv, f"#### {ref}") == 1
    assert bee.evaluate(conv, f"####{ref}") == 0 and bee.evaluate(conv, f"#### {ref}.") == 0


def test_spelling_bee_reproducible_and_correct():
    train, test = SpellingBee(50, "train"), SpellingBee(50, "test")
    assert [train.get_example(i) for i in range(5)] == [SpellingBee(50, "train").get_example(i) for i in range(5)]
    assert train.get_example(0) != test.get_example(0)
    for i in range(50):
        conv = test.get_example(i)
        conversation_messages(conv)
        parts = conv["messages"][1]["content"]
        assert [p["type"] for p in parts] == ["text", "text", "python", "python_output", "text"]  # ORIG's parts
        code = parts[2]["text"]
        word, letter = code.split("'")[1], code.split("'")[3]
        assert parts[3] == {"type": "python_output", "text": str(word.count(letter))}
        assert parts[-1]["text"].endswith(f"#### {word.count(letter)}")
        assert test.evaluate(conv, f"#### {word.count(letter)}") == 1
        assert test.evaluate(conv, f"#### {word.count(letter) + 1}") == 0
    assert len(QUESTION_TEMPLATES) >= 20
    assert all("{word}" in t and "{letter}" in t for t in QUESTION_TEMPLATES)


def test_simple_spelling():
    conv = SimpleSpelling(10, "train").get_example(3)
    word = conv["messages"][0]["content"].removeprefix("Spell the word: ")
    assert conv["messages"][1]["content"] == word + ":" + ",".join(word)


def run_python(source: str, cwd) -> int:
    return subprocess.run([sys.executable, "-c", source], cwd=cwd, capture_output=True, timeout=30, check=False).returncode


def test_humaneval_program_runs_reference_and_rejects_wrong_code(tmp_path):
    task = HumanEval(source="shipped", stop=3)
    for i in range(3):
        conv = task.get_example(i)
        prompt, reference = conv["messages"][0]["content"], conv["messages"][1]["content"]
        fenced = f"Here you go:\n```python\n{reference}```\nDone."
        assert extract_code(fenced) == reference.strip()  # ORIG strips the fenced code
        good = build_program(prompt, fenced, conv["test"], conv["entry_point"])
        bad = build_program(prompt, prompt + "    return None\n", conv["test"], conv["entry_point"])
        assert run_python(good, tmp_path) == 0
        assert run_python(bad, tmp_path) != 0


def test_identity_conversations():
    task = Identity()
    assert task.num_examples() >= 55
    texts = json.dumps([task.get_example(i) for i in range(task.num_examples())])
    assert "nanobench" in texts and "nanochat" in texts
    for i in range(task.num_examples()):
        conversation_messages(task.get_example(i))


def test_offline_mixtures_build_and_respect_limit():
    mid = mixtures.mid_train_mixture("shipped")
    assert mid.num_examples() == 285 + 2000 + 3 * Identity().num_examples() + 2000 + 800
    capped = mixtures.sft_train_mixture("shipped", limit=10)
    assert capped.num_examples() == 10 * 6
    for i in range(capped.num_examples()):
        conversation_messages(capped.get_example(i))
    val = mixtures.mid_val_mixture("shipped")
    assert val.num_examples() == 5200 + 420
    assert mixtures.sft_val_mixture("shipped").num_examples() == 420
