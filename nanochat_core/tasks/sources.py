"""Where a task's rows come from: the Hugging Face hub (``source="download"``) or the samples shipped in
``nanochat_core/data/chat/`` (``source="shipped"``, offline).

Both return the split in its published row order; tasks then apply the seed-42 shuffle.
"""

from __future__ import annotations

import gzip
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from nanochat_core.tasks.base import Rows

SOURCES = ("download", "shipped")
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
CHAT_DATA_DIR = DATA_DIR / "chat"
WORDS_DIR = DATA_DIR / "words"
IDENTITY_FILE = DATA_DIR / "identity" / "identity_conversations.jsonl"


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"unknown task data source {source!r}; expected one of {SOURCES}")
    return source


@lru_cache(maxsize=16)
def _read_jsonl_gz(path: str) -> tuple[dict[str, Any], ...]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def shipped_rows(filename: str) -> list[dict[str, Any]]:
    """Rows of a shipped ``data/chat/<filename>`` (cached per process; callers must not mutate them)."""
    path = CHAT_DATA_DIR / filename
    if not path.exists():
        raise FileNotFoundError(f"shipped task data {path} is missing")
    return list(_read_jsonl_gz(str(path)))


def hub_rows(
    repo: str,
    subset: str,
    split: str,
    cache_dir: str | os.PathLike[str] | None,
    endpoint: str | None = None,
) -> Rows:
    """Rows of a hub dataset split, downloaded into ``cache_dir/task_data`` on first use."""
    from nanochat_core.tasks.hub import load_split

    if cache_dir is None:
        raise ValueError(f"source='download' needs a cache_dir to store {repo} {subset}/{split}")
    return load_split(repo, subset, split, cache_dir, endpoint=endpoint)
