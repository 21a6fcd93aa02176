"""Hugging Face datasets through the hub's parquet export (spec 8.4, last paragraph).

``GET {endpoint}/api/datasets/<repo>/parquet/<subset>/<split>`` answers a JSON list of parquet shard
URLs. :func:`ensure_split` fetches that list once, downloads every shard into
``cache_dir/task_data/<owner>__<name>/<subset>/<split>/`` (resumable, locked, sha256 recorded in
``cache_dir/task_data/manifest.json`` on first download and enforced afterwards, so a corrupt shard
is re-fetched) and stores the list as ``shards.json``; later calls touch the network only to repair
a shard. :func:`load_split` returns the rows as a lazy :class:`ArrowRows` view.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from filelock import FileLock

from nanochat_core.download import DownloadError, Manifest, atomic_write_bytes, default_hf_endpoint, ensure

TASK_DATA_DIR = "task_data"
MANIFEST_NAME = "manifest.json"
SHARD_LIST_NAME = "shards.json"


def task_data_dir(cache_dir: str | os.PathLike[str]) -> Path:
    return Path(cache_dir) / TASK_DATA_DIR


def split_dir(cache_dir: str | os.PathLike[str], repo: str, subset: str, split: str) -> Path:
    """Where one split's shards live."""
    return task_data_dir(cache_dir) / repo.replace("/", "__") / subset / split


def parquet_list_url(repo: str, subset: str, split: str, endpoint: str | None = None) -> str:
    base = (endpoint or default_hf_endpoint()).rstrip("/")
    return f"{base}/api/datasets/{repo}/parquet/{subset}/{split}"


def fetch_shard_urls(repo: str, subset: str, split: str, *, endpoint: str | None = None, timeout: float = 60) -> list[str]:
    """Ask the hub for the parquet shard URLs of one split."""
    url = parquet_list_url(repo, subset, split, endpoint)
    request = urllib.request.Request(url, headers={"User-Agent": "nanobench-tasks/1", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) endpoint)
            payload = json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as err:
        raise DownloadError(f"cannot list parquet shards of {repo} {subset}/{split} at {url}: {err}") from err
    if not isinstance(payload, list) or not payload or not all(isinstance(u, str) for u in payload):
        raise DownloadError(f"{url}: expected a non-empty JSON list of shard URLs, got {str(payload)[:200]}")
    return payload


def ensure_split(
    repo: str,
    subset: str,
    split: str,
    cache_dir: str | os.PathLike[str],
    *,
    endpoint: str | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60,
) -> list[Path]:
    """Local parquet shard paths of one split, downloading what is missing or corrupt."""
    directory = split_dir(cache_dir, repo, subset, split)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(task_data_dir(cache_dir) / MANIFEST_NAME)
    listing = directory / SHARD_LIST_NAME
    with FileLock(str(listing) + ".lock"):
        if listing.exists():
            urls = json.loads(listing.read_text(encoding="utf-8"))
        else:
            urls = fetch_shard_urls(repo, subset, split, endpoint=endpoint, timeout=timeout)
        paths = []
        for i, url in enumerate(urls):
            dest = directory / f"{i:05d}.parquet"
            key = dest.relative_to(task_data_dir(cache_dir)).as_posix()
            ensure(url, dest, manifest, key=key, retries=retries, backoff=backoff, timeout=timeout)
            paths.append(dest)
        if not listing.exists():
            atomic_write_bytes(listing, (json.dumps(urls, indent=1) + "\n").encode("utf-8"))
    return paths


class ArrowRows:
    """Row access into parquet shards without turning the whole table into Python objects."""

    def __init__(self, paths: list[Path], columns: list[str] | None = None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(p, columns=columns) for p in paths]
        self.table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.table.num_rows:
            raise IndexError(index)
        return self.table.slice(index, 1).to_pylist()[0]


def load_split(
    repo: str,
    subset: str,
    split: str,
    cache_dir: str | os.PathLike[str],
    *,
    endpoint: str | None = None,
    columns: list[str] | None = None,
    **download_kwargs: Any,
) -> ArrowRows:
    """Rows of one hub dataset split (downloaded and cached on first use), in the hub's order."""
    return ArrowRows(ensure_split(repo, subset, split, cache_dir, endpoint=endpoint, **download_kwargs), columns)


# Every hub split the chat stages read (mid-training, SFT, ChatCORE), for prefetching before timing.
HUB_SPLITS: tuple[tuple[str, str, str], ...] = (
    ("HuggingFaceTB/smol-smoltalk", "default", "train"),
    ("HuggingFaceTB/smol-smoltalk", "default", "test"),
    ("cais/mmlu", "all", "test"),
    ("cais/mmlu", "auxiliary_train", "train"),
    ("allenai/ai2_arc", "ARC-Easy", "train"),
    ("allenai/ai2_arc", "ARC-Easy", "test"),
    ("allenai/ai2_arc", "ARC-Challenge", "train"),
    ("allenai/ai2_arc", "ARC-Challenge", "test"),
    ("openai/gsm8k", "main", "train"),
    ("openai/gsm8k", "main", "test"),
    ("openai/openai_humaneval", "openai_humaneval", "test"),
)


def prefetch_all(cache_dir: str | os.PathLike[str], *, endpoint: str | None = None, **download_kwargs: Any) -> list[Path]:
    """Download every split in :data:`HUB_SPLITS` and the :mod:`.upstream` files (a no-op for what is
    already cached and intact)."""
    from nanochat_core.tasks.upstream import prefetch_upstream

    paths: list[Path] = []
    for repo, subset, split in HUB_SPLITS:
        paths += ensure_split(repo, subset, split, cache_dir, endpoint=endpoint, **download_kwargs)
    # ORIG's identity conversations, word list and SpellingBee wording (not on the hub)
    return paths + prefetch_upstream(cache_dir, **download_kwargs)
