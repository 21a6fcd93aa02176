"""ARC-Easy / ARC-Challenge (``allenai/ai2_arc``) as multiple-choice tasks, shuffled with seed 42.

Shipped offline: the test splits only (``data/chat/arc_{easy,challenge}_test.jsonl.gz``, letters
A, B, C, ... by position). The train split must be downloaded. The download presets read the Hugging
Face rows as ORIG does: the published labels (some rows use 1-4) in the hub's row order, then the
seed-42 shuffle; ``provenance`` says which rows a task holds (chat_eval reports it).
"""

from __future__ import annotations

import os

from nanochat_core.tasks.base import MultipleChoiceTask, ShuffledRows
from nanochat_core.tasks.sources import check_source, hub_rows, shipped_rows

REPO = "allenai/ai2_arc"
SUBSETS = ("ARC-Easy", "ARC-Challenge")
SPLITS = ("train", "validation", "test")
SHIPPED_FILES = {"ARC-Easy": "arc_easy_test.jsonl.gz", "ARC-Challenge": "arc_challenge_test.jsonl.gz"}


class ARC(MultipleChoiceTask):
    def __init__(
        self,
        subset: str = "ARC-Easy",
        split: str = "test",
        *,
        source: str = "download",
        cache_dir: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        **slice_kwargs: int | None,
    ) -> None:
        super().__init__(**slice_kwargs)
        if subset not in SUBSETS or split not in SPLITS:
            raise ValueError(f"ARC subset must be one of {SUBSETS} and split one of {SPLITS}, got {subset}/{split}")
        self.name, self.subset, self.split, self.source = subset, subset, split, check_source(source)
        if source == "shipped":
            if split != "test":
                raise ValueError(f"only the ARC test split is shipped; {subset}/{split} needs source='download'")
            rows = shipped_rows(SHIPPED_FILES[subset])
            self.provenance = f"shipped {subset} {split} rows (offline stand-in: letters A-D by position, not the hub's labels)"
        else:
            rows = hub_rows(REPO, subset, split, cache_dir, endpoint)
            self.provenance = f"Hugging Face {REPO} {subset}/{split} rows (published labels, hub order, seed-42 shuffle)"
        self.rows = ShuffledRows(rows)

    def num_rows(self) -> int:
        return len(self.rows)

    def parse_row(self, index: int) -> tuple[str, list[str], list[str], str]:
        row = self.rows[index]
        if self.source == "shipped":
            return row["question"], list(row["choices"]), list(row["letters"]), row["answer"]
        choices = row["choices"]
        return row["question"], list(choices["text"]), [str(x) for x in choices["label"]], str(row["answerKey"])
