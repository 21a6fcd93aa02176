"""SmolTalk (``HuggingFaceTB/smol-smoltalk``): general chat, train ~460K / test ~24K, shuffled with seed 42.

Download only (not shipped). Each row holds ``messages`` with an optional leading system message,
rendered as is (the renderer merges the system message into the first user turn). Used for
training and validation loss, not scored by ChatCORE.
"""

from __future__ import annotations

import os
from typing import Any

from nanochat_core.chat_format import conversation_messages
from nanochat_core.tasks.base import ShuffledRows, Task
from nanochat_core.tasks.sources import check_source, hub_rows

REPO = "HuggingFaceTB/smol-smoltalk"
SUBSET = "default"


class SmolTalk(Task):
    name = "SmolTalk"
    eval_type = "generative"

    def __init__(
        self,
        split: str = "train",
        *,
        source: str = "download",
        cache_dir: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        **slice_kwargs: int | None,
    ) -> None:
        super().__init__(**slice_kwargs)
        if split not in ("train", "test"):
            raise ValueError(f"SmolTalk split must be train or test, got {split!r}")
        if check_source(source) == "shipped":
            raise ValueError("SmolTalk is not shipped; offline mixtures use the stand-ins of nanochat_core.tasks.mixtures")
        self.split, self.source = split, source
        self.rows = ShuffledRows(hub_rows(REPO, SUBSET, split, cache_dir, endpoint))

    def num_rows(self) -> int:
        return len(self.rows)

    def row_conversation(self, index: int) -> dict[str, Any]:
        messages = [{"role": m["role"], "content": m["content"]} for m in self.rows[index]["messages"]]
        conversation_messages(messages)  # raises ValueError on a malformed row
        return {"messages": messages}

    def evaluate(self, conversation: dict[str, Any], completion: str) -> int:
        raise NotImplementedError("SmolTalk has no automatic scoring; it is a training/validation-loss task")
