"""GSM8K (``openai/gsm8k``, subset ``main``): grade-school maths with calculator tool calls.

The reference solution is split at its ``<<expr=result>>`` annotations into text, ``python`` (expr)
and ``python_output`` (result) parts, so training teaches the model to call the calculator; the
final text part ends with ``#### <answer>``. A completion is correct when the answer after its first
``#### `` equals the reference answer: ORIG's rule, exactly one space after ``####`` and then the longest
run of digits, dots and commas (optionally after a ``-``), commas removed, compared as text. So
``####18`` and ``####  18`` give no answer and ``#### 18.`` gives ``18.``, which is not ``18``.

Shipped offline: the full test split (1,319) and the first 2,000 of 7,473 train rows (a smoke
stand-in for the train split, shuffled among themselves).
"""

from __future__ import annotations

import os
import re
from typing import Any

from nanochat_core.tasks.base import ShuffledRows, Task
from nanochat_core.tasks.sources import check_source, hub_rows, shipped_rows

REPO = "openai/gsm8k"
SHIPPED_FILES = {"test": "gsm8k_test.jsonl.gz", "train": "gsm8k_train.jsonl.gz"}
_CALC = re.compile(r"<<([^<>]*)>>")
_FINAL = re.compile(r"#### (-?[0-9.,]+)")


def solution_parts(solution: str) -> list[dict[str, str]]:
    """Split a GSM8K solution into text / python / python_output parts at ``<<expr=result>>``."""
    parts: list[dict[str, str]] = []
    pos = 0
    for match in _CALC.finditer(solution):
        if match.start() > pos:
            parts.append({"type": "text", "text": solution[pos : match.start()]})
        expr, sep, result = match.group(1).rpartition("=")
        if not sep:
            raise ValueError(f"calculator annotation without '=': {match.group(0)!r}")
        parts.append({"type": "python", "text": expr})
        parts.append({"type": "python_output", "text": result})
        pos = match.end()
    if pos < len(solution):
        parts.append({"type": "text", "text": solution[pos:]})
    return parts


def extract_final_answer(text: str) -> str | None:
    """The answer text after the first ``#### `` (ORIG's rule, see the module docstring), or None."""
    match = _FINAL.search(text)
    return match.group(1).strip().replace(",", "") if match else None


def assistant_text(message: dict[str, Any]) -> str:
    """All text of an assistant message (parts concatenated)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


class GSM8K(Task):
    name = "GSM8K"
    eval_type = "generative"

    def __init__(
        self,
        subset: str = "main",
        split: str = "test",
        *,
        source: str = "download",
        cache_dir: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        **slice_kwargs: int | None,
    ) -> None:
        super().__init__(**slice_kwargs)
        if subset != "main" or split not in ("train", "test"):
            raise ValueError(f"GSM8K supports subset 'main' with split train/test, got {subset}/{split}")
        self.subset, self.split, self.source = subset, split, check_source(source)
        rows = shipped_rows(SHIPPED_FILES[split]) if source == "shipped" else hub_rows(REPO, subset, split, cache_dir, endpoint)
        self.rows = ShuffledRows(rows)

    def num_rows(self) -> int:
        return len(self.rows)

    def row_conversation(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {
            "messages": [
                {"role": "user", "content": row["question"]},
                {"role": "assistant", "content": solution_parts(row["answer"])},
            ]
        }

    def evaluate(self, conversation: dict[str, Any], completion: str) -> int:
        content = conversation["messages"][-1]["content"]
        # the reference is read from the last part, as ORIG reads it
        reference = extract_final_answer(content if isinstance(content, str) else content[-1]["text"])
        predicted = extract_final_answer(completion)
        return int(reference is not None and predicted == reference)
