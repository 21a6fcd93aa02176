"""HumanEval (``openai/openai_humaneval``, 164 problems), scored by running the code in the OS sandbox.

User message = the problem prompt; reference assistant message = prompt, a newline, then the canonical
solution (as ORIG builds it). Scoring follows ORIG's rules:

- **code**: the first fenced block whose opening fence is `````` ``` `````` or `````` ```python `````` (optionally
  followed by spaces) and whose closing fence starts a line; its text stripped. With no such block, the
  whole completion stripped. (Other language tags, e.g. `````` ```py ``````, do not count as a fence.)
- **imports**: the prompt's leading ``import``/``from`` lines (stripped), read until the first line that
  is neither blank, a comment nor an import.
- **program**: imports, a blank line, the code, a blank line, the problem's test code, then
  ``check(<entry_point>)``; run by :func:`nanochat_core.execution.execute_code` with fresh empty globals
  (``__name__`` is not ``"__main__"``, so ``if __name__ == "__main__":`` blocks are skipped). It passes
  only if ``check`` returned: an early ``sys.exit(0)`` / ``os._exit(0)`` is a failure.

Where no OS sandbox works, evaluation is refused unless ``allow_unsandboxed`` (or the environment
variable ``NANOBENCH_ALLOW_UNSANDBOXED_CODE=1``); :attr:`HumanEval.sandbox_mechanism` says which ran.
Shipped offline in full.
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
ALLOW_UNSANDBOXED_ENV = "NANOBENCH_ALLOW_UNSANDBOXED_CODE"
# Opening fence: ``` or ```python, optional whitespace, newline; the block ends at a newline followed by ```.
_FENCE = re.compile(r"```(?:python)?\s*\n(?P<code>.*?)\n```", re.S)


def extract_code(completion: str) -> str:
    """The first fenced code block of a completion (stripped), else the whole completion (stripped)."""
    match = _FENCE.search(completion)
    return (match["code"] if match else completion).strip()


def prompt_imports(prompt: str) -> list[str]:
    """The prompt's leading import lines (stripped); stops at its first line of other code."""
    imports = []
    for line in prompt.split("\n"):
        text = line.strip()
        if text.startswith(("import ", "from ")):
            imports.append(text)
        elif text and not text.startswith("#"):
            break
    return imports


def build_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The program the sandbox runs for one completion."""
    imports = "\n".join(prompt_imports(prompt))
    return f"{imports}\n\n{extract_code(completion)}\n\n{test}\ncheck({entry_point})"


def unsandboxed_allowed() -> bool:
    """Whether the user allowed running model-written code without an OS sandbox (environment flag)."""
    return os.environ.get(ALLOW_UNSANDBOXED_ENV, "") == "1"


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
        allow_unsandboxed: bool | None = None,
        **slice_kwargs: int | None,
    ) -> None:
        super().__init__(**slice_kwargs)
        self.source = check_source(source)
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self.allow_unsandboxed = unsandboxed_allowed() if allow_unsandboxed is None else allow_unsandboxed
        self.sandbox_mechanism: str | None = None  # set by check_sandbox() / the first evaluation
        rows = shipped_rows(SHIPPED_FILE) if source == "shipped" else hub_rows(REPO, SUBSET, "test", cache_dir, endpoint)
        self.rows = ShuffledRows(rows)

    def num_rows(self) -> int:
        return len(self.rows)

    def row_conversation(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {
            "messages": [
                {"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": f"{row['prompt']}\n{row['canonical_solution']}"},
            ],
            "task_id": row["task_id"],
            "entry_point": row["entry_point"],
            "test": row["test"],
        }

    def check_sandbox(self) -> str:
        """The OS sandbox mechanism evaluations will use; raises SandboxUnavailable (before anything
        runs) when there is none and running without one was not allowed."""
        from nanochat_core.sandbox import choose_mechanism

        self.sandbox_mechanism = choose_mechanism(allow_unsandboxed=self.allow_unsandboxed)
        return self.sandbox_mechanism

    def evaluate(self, conversation: dict[str, Any], completion: str) -> int:
        from nanochat_core.execution import execute_code

        mechanism = self.sandbox_mechanism or self.check_sandbox()
        prompt = conversation["messages"][0]["content"]
        program = build_program(prompt, completion, conversation["test"], conversation["entry_point"])
        result = execute_code(
            program, timeout_s=self.timeout_s, memory_mb=self.memory_mb,
            sandbox_mechanism=mechanism, allow_unsandboxed=self.allow_unsandboxed,
        )
        return int(result.success)
