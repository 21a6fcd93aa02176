"""HumanEval (``openai/openai_humaneval``, 164 problems), scored by running the code in the sandbox.

User message = the problem prompt; reference assistant message = prompt + canonical solution. To
score a completion: take its first fenced code block (or the whole completion), put the prompt's
import lines in front, append the problem's test code and ``check(<entry_point>)``, and run it with
``nanochat_core.execution.execute_code``; it passes iff the program exits cleanly. Shipped offline
in full.
"""

from __future__ import annotations

import os
import re
from typing import Any

from nanochat_core.tasks.base import ShuffledRows, Task
from nanochat_core.tasks.sources import check_source, hub_rows, shipped_rows

REPO = "openai/openai_humaneval"
SUBSET = "openai_humaneval"
SHIPPED_FILE = "humaneval_test.jsonl.gz"
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)  # any language tag


def extract_code(completion: str) -> str:
    """The first fenced code block of a completion, else the completion itself."""
    match = _FENCE.search(completion)
    return match.group(1) if match else completion


def prompt_imports(prompt: str) -> list[str]:
    """The top-level ``import``/``from ... import`` lines of a prompt."""
    return [line for line in prompt.splitlines() if line.startswith(("import ", "from "))]


def build_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The program the sandbox runs for one completion."""
    code = extract_code(completion)
    return "\n".join([*prompt_imports(prompt), "", code, "", test, "", f"check({entry_point})", ""])


class HumanEval(Task):
    name = "HumanEval"
    eval_type = "generative"

    def __init__(
        self,
        *,
        source: str = "download",
        cache_dir: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        timeout_s: float = 5.0,
        memory_mb: int = 256,
        **slice_kwargs: int | None,
    ) -> None:
        super().__init__(**slice_kwargs)
        self.source = check_source(source)
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        rows = shipped_rows(SHIPPED_FILE) if source == "shipped" else hub_rows(REPO, SUBSET, "test", cache_dir, endpoint)
        self.rows = ShuffledRows(rows)

    def num_rows(self) -> int:
        return len(self.rows)

    def row_conversation(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {
            "messages": [
                {"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["prompt"] + row["canonical_solution"]},
            ],
            "task_id": row["task_id"],
            "entry_point": row["entry_point"],
            "test": row["test"],
        }

    def evaluate(self, conversation: dict[str, Any], completion: str) -> int:
        from nanochat_core.execution import execute_code

        prompt = conversation["messages"][0]["content"]
        program = build_program(prompt, completion, conversation["test"], conversation["entry_point"])
        result = execute_code(program, timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        return int(result.success)
