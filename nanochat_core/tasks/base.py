"""Task framework (spec 8.4, 13): a sliceable list of conversations plus its scoring rule.

A :class:`Task` exposes ``num_examples()`` and ``get_example(i) -> conversation dict`` over a view
``range(start, stop, step)`` of its underlying rows, an ``eval_type`` ("categorical" or
"generative") and ``evaluate(conversation, completion_text) -> int`` (1 correct, 0 wrong).
Dataset-backed tasks hold their rows in a fixed, seeded order (:func:`shuffled_order`, the numpy
permutation Hugging Face ``Dataset.shuffle(seed)`` uses). :class:`TaskMixture` interleaves several
tasks through a ``random.Random(seed)``-shuffled index map.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

SHUFFLE_SEED = 42
MC_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class Rows(Protocol):
    """Random-access records (a list of dicts, or a lazy Arrow table view)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


def shuffled_order(n: int, seed: int | None = SHUFFLE_SEED) -> list[int]:
    """Row order after a seeded shuffle: ``numpy.random.default_rng(seed).permutation(n)``; identity for None."""
    if seed is None:
        return list(range(n))
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


class ShuffledRows:
    """``rows`` seen through :func:`shuffled_order` (computed once, rows are not copied)."""

    def __init__(self, rows: Rows, seed: int | None = SHUFFLE_SEED) -> None:
        self.rows = rows
        self.order = shuffled_order(len(rows), seed)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[self.order[index]]


class Task(ABC):
    """Base class: subclasses implement ``num_rows``, ``row_conversation`` and ``evaluate``."""

    name: str = "task"
    eval_type: str = "generative"  # "categorical" | "generative"
    provenance: str = ""  # where the rows / wording come from, for results (see task_provenance)

    def __init__(self, *, start: int = 0, stop: int | None = None, step: int = 1) -> None:
        if start < 0 or step < 1 or (stop is not None and stop < start):
            raise ValueError(f"bad task slice start={start} stop={stop} step={step}")
        self.start, self.stop, self.step = start, stop, step

    @abstractmethod
    def num_rows(self) -> int:
        """Rows in the underlying (unsliced) data."""

    @abstractmethod
    def row_conversation(self, index: int) -> dict[str, Any]:
        """The conversation of underlying row ``index``."""

    @abstractmethod
    def evaluate(self, conversation: dict[str, Any], completion: str) -> int:
        """1 if ``completion`` (the assistant's reply text) answers ``conversation`` correctly, else 0."""

    def reward(self, conversation: dict[str, Any], completion: str) -> float:
        """RL reward: the evaluation outcome as a float."""
        return float(self.evaluate(conversation, completion))

    def _view(self) -> range:
        n = self.num_rows()
        stop = n if self.stop is None else min(self.stop, n)
        return range(min(self.start, stop), stop, self.step)

    def num_examples(self) -> int:
        return len(self._view())

    def __len__(self) -> int:
        return self.num_examples()

    def get_example(self, index: int) -> dict[str, Any]:
        view = self._view()
        if not 0 <= index < len(view):
            raise IndexError(f"{self.name}: example {index} out of range (0..{len(view) - 1})")
        return self.row_conversation(view[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get_example(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(self.num_examples()):
            yield self.get_example(i)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, examples={self.num_examples()})"


class TaskMixture:
    """Several tasks as one shuffled dataset.

    The index map lists ``(task, example)`` for every example of every task and is shuffled once by
    ``random.Random(seed)``. Passing the same task twice repeats it (one epoch per occurrence).
    """

    def __init__(self, tasks: Sequence[Task], seed: int = SHUFFLE_SEED) -> None:
        if not tasks:
            raise ValueError("a TaskMixture needs at least one task")
        self.tasks = list(tasks)
        self.index_map = [(t, i) for t, task in enumerate(self.tasks) for i in range(task.num_examples())]
        random.Random(seed).shuffle(self.index_map)

    def num_examples(self) -> int:
        return len(self.index_map)

    def __len__(self) -> int:
        return len(self.index_map)

    def get_example(self, index: int) -> dict[str, Any]:
        t, i = self.index_map[index]
        return self.tasks[t].get_example(i)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get_example(index)

    def source_of(self, index: int) -> tuple[int, int]:
        """(task position, example index) behind mixture example ``index``."""
        return self.index_map[index]


def render_multiple_choice(question: str, choices: Sequence[str], letters: Sequence[str]) -> str:
    """The user prompt of a multiple-choice item (spec 8.4): choices as ``- <choice>=<letter>``."""
    lines = [f"Multiple Choice question: {question}"]
    lines += [f"- {choice}={letter}" for choice, letter in zip(choices, letters, strict=True)]
    lines += ["", "Respond only with the letter of the correct answer."]
    return "\n".join(lines)


class MultipleChoiceTask(Task):
    """Categorical task whose rows become a user MC prompt and a bare-letter assistant answer.

    Subclasses implement ``num_rows`` and ``parse_row(index) -> (question, choices, letters, answer_letter)``.
    Conversations carry ``"letters"`` (the allowed answers) next to ``"messages"``.
    """

    eval_type = "categorical"

    @abstractmethod
    def parse_row(self, index: int) -> tuple[str, list[str], list[str], str]: ...

    def row_conversation(self, index: int) -> dict[str, Any]:
        question, choices, letters, answer = self.parse_row(index)
        if answer not in letters:
            raise ValueError(f"{self.name} row {index}: answer {answer!r} not among letters {letters}")
        return {
            "messages": [
                {"role": "user", "content": render_multiple_choice(question, choices, letters)},
                {"role": "assistant", "content": answer},
            ],
            "letters": list(letters),
        }

    def evaluate(self, conversation: dict[str, Any], completion: str) -> int:
        return int(completion.strip() == conversation["messages"][-1]["content"])
