"""HumanEval scoring as ORIG does it (issue 16 item 10): fence rules, leading imports, `__name__`
semantics, exit-status tricks, the timeout excluding start-up, and the canonical solutions passing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from nanochat_core import sandbox
from nanochat_core.execution import execute_code
from nanochat_core.tasks.humaneval import HumanEval, build_program, extract_code, prompt_imports

needs_sandbox = pytest.mark.skipif(sandbox.available_mechanism() is None, reason="no OS sandbox on this machine")

# ORIG's rule: ``` or ```python (+ optional whitespace) then a newline opens; "\n```" closes; result stripped.
FENCE_CASES = [
    ("```python\nx = 1\n```", "x = 1"),
    ("```\nx = 1\n```", "x = 1"),
    ("```python   \nx = 1\n```", "x = 1"),
    ("text\n```python\n  x = 1  \n```\nmore\n```python\ny = 2\n```", "x = 1"),  # first block, stripped
    ("```py\nx = 1\n```", "```py\nx = 1\n```"),  # another tag is no fence: the whole completion
    ("```python3\nx = 1\n```", "```python3\nx = 1\n```"),
    ("```python\nx = 1```", "```python\nx = 1```"),  # the closing fence must start a line
    ("   def f():\n    return 1\n\n", "def f():\n    return 1"),  # no fence: the whole completion, stripped
    ("```python\n```\nx = 1\n```", "```\nx = 1"),  # an empty block cannot close at once: ORIG's regex result
]


@pytest.mark.parametrize(("completion", "code"), FENCE_CASES)
def test_code_extraction_follows_origs_fence_rules(completion: str, code: str) -> None:
    assert extract_code(completion) == code


def test_reference_answer_is_prompt_newline_solution_as_orig_builds_it() -> None:
    task = HumanEval(source="shipped", stop=2)
    conv = task.get_example(0)
    row = next(r for r in task.rows if r["task_id"] == conv["task_id"])
    assert conv["messages"][1]["content"] == row["prompt"] + "\n" + row["canonical_solution"]


def test_only_leading_imports_are_kept() -> None:
    prompt = "\n# helper\nimport math\n  from typing import List\n\ndef f(x):\n    import os\n    return x\nimport sys\n"
    assert prompt_imports(prompt) == ["import math", "from typing import List"]
    assert build_program(prompt, "def f(x):\n    return x", "def check(c):\n    assert c(1) == 1", "f") == (
        "import math\nfrom typing import List\n\ndef f(x):\n    return x\n\ndef check(c):\n    assert c(1) == 1\ncheck(f)"
    )


PROMPT = 'def add(a, b):\n    """Sum."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n"


def conversation() -> dict:
    return {"messages": [{"role": "user", "content": PROMPT}], "test": TEST, "entry_point": "add"}


@needs_sandbox
@pytest.mark.parametrize(
    "wrong",
    [
        "def add(a, b):\n    return 0\nimport sys\nsys.exit(0)",
        "def add(a, b):\n    return 0\nimport os\nos._exit(0)",
        "def add(a, b):\n    return 0\nraise SystemExit(0)",
        "def add(a, b):\n    import os\n    os._exit(0)",  # exits from inside check()
        "def add(a, b):\n    import sys\n    sys.exit(0)",
        "def add(a, b):\n    return 0\nimport atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(0)",
    ],
    ids=["sys.exit", "os._exit", "SystemExit", "os._exit-in-check", "sys.exit-in-check", "atexit"],
)
def test_exit_status_zero_after_a_wrong_solution_fails(wrong: str) -> None:
    task = HumanEval(source="shipped", stop=1)
    assert task.evaluate(conversation(), f"```python\n{wrong}\n```") == 0


@needs_sandbox
def test_correct_solution_passes_and_main_block_is_skipped() -> None:
    task = HumanEval(source="shipped", stop=1)
    good = "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    raise SystemExit(1)"
    assert task.evaluate(conversation(), f"Sure:\n```python\n{good}\n```\n") == 1
    assert task.sandbox_mechanism == sandbox.available_mechanism()


@needs_sandbox
def test_timeout_excludes_interpreter_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # Start-up (sandbox + interpreter) takes tens of milliseconds: a program using most of a short budget
    # still passes, and the measured duration covers the program only.
    result = execute_code("import time\ntime.sleep(0.3)\n", timeout_s=0.45)
    assert result.success, result.error
    assert 0.3 <= result.duration_s < 0.45
    slow = execute_code("import time\ntime.sleep(2)\n", timeout_s=0.5)
    assert slow.timed_out and not slow.success


# ORIG's 256 MB RLIMIT_AS in a process forked from torch fails these canonical solutions; ours pass.
ORIG_MEMORY_FAILURES = (36, 69, 87, 94, 95, 126, 129, 141, 142, 147)


def _canonical(task: HumanEval, numbers: set[int] | None) -> list[tuple[str, dict]]:
    rows = []
    for i in range(task.num_examples()):
        conv = task.get_example(i)
        number = int(conv["task_id"].split("/")[1])
        if numbers is None or number in numbers:
            rows.append((conv["task_id"], conv))
    return rows


def _score(task: HumanEval, rows: list[tuple[str, dict]]) -> list[str]:
    def one(item):
        task_id, conv = item
        reference = conv["messages"][1]["content"]
        return task_id, task.evaluate(conv, f"Here is the code:\n```python\n{reference}\n```\n")

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [task_id for task_id, ok in pool.map(one, rows) if not ok]


@needs_sandbox
def test_canonical_solutions_orig_fails_under_its_memory_limit_pass_here() -> None:
    task = HumanEval(source="shipped")
    rows = _canonical(task, set(ORIG_MEMORY_FAILURES))
    assert len(rows) == len(ORIG_MEMORY_FAILURES)
    assert _score(task, rows) == []


@needs_sandbox
@pytest.mark.slow
def test_all_164_canonical_solutions_pass() -> None:
    task = HumanEval(source="shipped")
    rows = _canonical(task, None)
    assert len(rows) == 164
    t0 = time.monotonic()
    assert _score(task, rows) == []
    print(f"164 canonical solutions in {time.monotonic() - t0:.1f} s")


def test_refused_without_a_sandbox_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "available_mechanism", lambda: None)
    with pytest.raises(sandbox.SandboxUnavailable):
        HumanEval(source="shipped", stop=1).check_sandbox()
    monkeypatch.setenv("NANOBENCH_ALLOW_UNSANDBOXED_CODE", "1")
    task = HumanEval(source="shipped", stop=1)
    assert task.check_sandbox() == "none"
    assert task.evaluate(conversation(), "def add(a, b):\n    return a + b") == 1
