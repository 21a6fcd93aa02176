"""MMLU (``cais/mmlu``) as a multiple-choice task with letters A-D, shuffled with seed 42.

Subsets: ``all`` (splits test / validation / dev / auxiliary_train) and ``auxiliary_train`` (split
train; its parquet rows wrap the record in a ``train`` struct). Shipped offline: ``all`` test (14,042)
and dev (285); auxiliary_train and validation must be downloaded.
"""

from __future__ import annotations

import os

from nanochat_core.tasks.base import MultipleChoiceTask, ShuffledRows
from nanochat_core.tasks.sources import check_source, hub_rows, shipped_rows

REPO = "cais/mmlu"
LETTERS = ["A", "B", "C", "D"]
SHIPPED_FILES = {("all", "test"): "mmlu_test.jsonl.gz", ("all", "dev"): "mmlu_dev.jsonl.gz"}


class MMLU(MultipleChoiceTask):
    name = "MMLU"

    def __init__(
        self,
        subset: str = "all",
        split: str = "test",
        *,
        source: str = "download",
        cache_dir: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        **slice_kwargs: int | None,
    ) -> None:
        super().__init__(**slice_kwargs)
        valid = {"all": ("test", "validation", "dev", "auxiliary_train"), "auxiliary_train": ("train",)}
        if split not in valid.get(subset, ()):
            raise ValueError(f"MMLU subset/split must be one of {valid}, got {subset}/{split}")
        self.subset, self.split, self.source = subset, split, check_source(source)
        if source == "shipped":
            if (subset, split) not in SHIPPED_FILES:
                raise ValueError(f"MMLU {subset}/{split} is not shipped (only all/test and all/dev); use source='download'")
            rows = shipped_rows(SHIPPED_FILES[(subset, split)])
        else:
            rows = hub_rows(REPO, subset, split, cache_dir, endpoint)
        self.rows = ShuffledRows(rows)

    def num_rows(self) -> int:
        return len(self.rows)

    def parse_row(self, index: int) -> tuple[str, list[str], list[str], str]:
        row = self.rows[index]
        if isinstance(row.get("train"), dict):  # auxiliary_train rows are nested one level down
            row = row["train"]
        choices = list(row["choices"])
        if len(choices) != len(LETTERS):
            raise ValueError(f"MMLU row {index} has {len(choices)} choices, expected 4")
        answer = row["answer"]
        letter = LETTERS[answer] if isinstance(answer, int) else str(answer)
        return row["question"], choices, list(LETTERS), letter
