"""Pretraining text data: FineWeb-Edu shard downloads, the shipped corpus, row-group iteration.

A data directory holds parquet shards `shard_{i:05d}.parquet`, each with one string column
`text`. By convention the lexicographically last file is the validation shard and all others
are training shards (spec 3.1). Documents are read one row group at a time, row groups strided
across ranks (`rank, rank + W, rank + 2W, ...`) file by file (spec 3.2).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from nanochat_core.download import (
    DownloadError,
    Manifest,
    ProgressFn,
    atomic_write_bytes,
    default_hf_endpoint,
    ensure,
    sha256_file,
)

FINEWEB_REPO = "karpathy/fineweb-edu-100b-shuffle"
FINEWEB_MAX_INDEX = 1822  # shards 0..1822 (1,823 files)
MANIFEST_NAME = "manifest.json"

SHIPPED_CORPUS_DIR = Path(__file__).resolve().parent / "data" / "corpus"
SHIPPED_CORPUS_SHA256 = {
    "corpus_train.jsonl.gz": "1081763d40755259490ca6f247b0a6757fd29fbdee24017fcc800c581cb6aa8e",
    "corpus_val.jsonl.gz": "ab48e1718bbf3e25c6adc75720b7f2d2f01f59e3ef5cee459cf0f650613fb807",
}
SHIPPED_TRAIN_SHARDS = 2

Position = tuple[int, int]  # (file index, row-group index)


# --------------------------------------------------------------------------------------------
# FineWeb-Edu shards
# --------------------------------------------------------------------------------------------


def shard_filename(index: int) -> str:
    """`shard_00042.parquet` for index 42."""
    if not 0 <= index <= FINEWEB_MAX_INDEX:
        raise ValueError(f"shard index {index} outside 0..{FINEWEB_MAX_INDEX}")
    return f"shard_{index:05d}.parquet"


def shard_url(index: int, endpoint: str | None = None) -> str:
    """Hub URL of one FineWeb-Edu shard; `endpoint` defaults to `$HF_ENDPOINT` or huggingface.co."""
    base = (endpoint or default_hf_endpoint()).rstrip("/")
    return f"{base}/datasets/{FINEWEB_REPO}/resolve/main/{shard_filename(index)}"


def download_shards(
    data_dir: str | os.PathLike[str],
    indices: Iterable[int],
    *,
    endpoint: str | None = None,
    workers: int = 4,
    manifest: Manifest | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60,
    progress: ProgressFn | None = None,
    on_complete: Callable[[str], None] | None = None,
) -> list[str]:
    """Fetch shards into `data_dir` with a thread pool; returns their paths in `indices` order.

    Each shard goes through :func:`nanochat_core.download.ensure` against `data_dir/manifest.json`
    (or the given manifest): present and intact shards are skipped, corrupt ones re-fetched.
    `progress(bytes, total)` is per file (called from worker threads); `on_complete(path)` runs
    after each shard is in place. The first failure is raised once every worker has stopped.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = manifest or Manifest(data_dir / MANIFEST_NAME)
    base = endpoint or default_hf_endpoint()
    order = list(indices)

    def fetch(index: int) -> str:
        dest = data_dir / shard_filename(index)
        ensure(
            shard_url(index, base),
            dest,
            manifest,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            progress=progress,
        )
        if on_complete is not None:
            on_complete(str(dest))
        return str(dest)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="shard-dl") as pool:
        futures = [pool.submit(fetch, i) for i in order]
        errors = [f.exception() for f in futures]
    failed = [(i, e) for i, e in zip(order, errors) if e is not None]
    if failed:
        first_index, first_error = failed[0]
        raise DownloadError(
            f"{len(failed)} of {len(order)} shards failed; first: shard {first_index}: {first_error}"
        ) from first_error
    return [f.result() for f in futures]


class BackgroundDownload:
    """A shard download running on a daemon thread; `wait()` joins it and re-raises its error."""

    def __init__(self, data_dir: str | os.PathLike[str], indices: Iterable[int], **kwargs) -> None:
        self._args = (data_dir, list(indices))
        self._kwargs = kwargs
        self._paths: list[str] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shard-background-download", daemon=True)

    def _run(self) -> None:
        try:
            self._paths = download_shards(*self._args, **self._kwargs)
        except BaseException as err:  # noqa: BLE001 (re-raised in wait())
            self._error = err

    def start(self) -> "BackgroundDownload":
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> list[str]:
        """Block until the download ends; return the shard paths or raise its error."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"background shard download still running after {timeout}s")
        if self._error is not None:
            raise self._error
        assert self._paths is not None
        return self._paths


def start_background_download(
    data_dir: str | os.PathLike[str], indices: Iterable[int], **kwargs
) -> BackgroundDownload:
    """Start :func:`download_shards` on a thread (same keyword arguments) and return its handle."""
    return BackgroundDownload(data_dir, indices, **kwargs).start()


# --------------------------------------------------------------------------------------------
# Shipped corpus -> parquet shards
# --------------------------------------------------------------------------------------------


def _read_jsonl_gz(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def parquet_bytes(texts: Sequence[str], *, docs_per_row_group: int) -> bytes:
    """One parquet file (column `text`, zstd level 3, fixed row groups), byte-for-byte reproducible."""
    table = pa.table({"text": pa.array(list(texts), type=pa.string())})
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        row_group_size=docs_per_row_group,
        compression="zstd",
        compression_level=3,
        use_dictionary=False,
        write_statistics=False,
    )
    return sink.getvalue()


def _verified_shipped(name: str) -> Path:
    path = SHIPPED_CORPUS_DIR / name
    got = sha256_file(path)
    if got != SHIPPED_CORPUS_SHA256[name]:
        raise DownloadError(f"shipped corpus file {path} is corrupt: sha256 {got}, expected {SHIPPED_CORPUS_SHA256[name]}")
    return path


def materialize_shipped_corpus(
    data_dir: str | os.PathLike[str], *, docs_per_row_group: int = 64, train_shards: int = SHIPPED_TRAIN_SHARDS
) -> list[str]:
    """Write the shipped corpus as parquet shards in `data_dir`; returns their paths, sorted.

    Train documents are split in order into `train_shards` contiguous shards
    (`shard_00000.parquet`, ...); the val documents become the last shard, so
    :func:`split_files` picks it as val. The output is deterministic for a given pyarrow version.
    Shard hashes are recorded in `data_dir/manifest.json`. Use a directory of its own.
    """
    if docs_per_row_group < 1 or train_shards < 1:
        raise ValueError("docs_per_row_group and train_shards must be >= 1")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    train_docs = _read_jsonl_gz(_verified_shipped("corpus_train.jsonl.gz"))
    val_docs = _read_jsonl_gz(_verified_shipped("corpus_val.jsonl.gz"))
    per_shard = -(-len(train_docs) // train_shards)
    groups = [train_docs[i * per_shard : (i + 1) * per_shard] for i in range(train_shards)] + [val_docs]
    manifest = Manifest(data_dir / MANIFEST_NAME)
    paths = []
    with FileLock(str(data_dir / "shipped_corpus.lock")):
        for index, docs in enumerate(groups):
            source = "corpus_val.jsonl.gz" if index == train_shards else "corpus_train.jsonl.gz"
            data = parquet_bytes(docs, docs_per_row_group=docs_per_row_group)
            digest = hashlib.sha256(data).hexdigest()
            path = data_dir / f"shard_{index:05d}.parquet"
            if not path.exists() or sha256_file(path) != digest:
                atomic_write_bytes(path, data)
            manifest.record(path.name, sha256=digest, size=len(data), url=f"shipped:{source}")
            paths.append(str(path))
    return paths


# --------------------------------------------------------------------------------------------
# Listing and iteration
# --------------------------------------------------------------------------------------------


def list_parquet_files(data_dir: str | os.PathLike[str]) -> list[str]:
    """Full paths of the `*.parquet` files in `data_dir`, sorted by name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return []
    return [str(data_dir / name) for name in sorted(os.listdir(data_dir)) if name.endswith(".parquet")]


def split_files(files: Sequence[str]) -> tuple[list[str], str]:
    """(train files, val file): the last file is val, the rest train (needs at least two)."""
    ordered = sorted(files)
    if len(ordered) < 2:
        raise ValueError(f"need at least 2 parquet files (train + val), got {len(ordered)}")
    return ordered[:-1], ordered[-1]


def resume_position(position: Position, world_size: int = 1) -> Position:
    """The `start` that continues right after the row group at `position` (same rank)."""
    file_idx, rg_idx = position
    return file_idx, rg_idx + world_size


def iter_documents(
    files: Sequence[str],
    *,
    rank: int = 0,
    world_size: int = 1,
    start: Position | None = None,
    batch_docs: int = 128,
    loop: bool = False,
) -> Iterator[tuple[list[str], Position]]:
    """Yield `(texts, (file_idx, rg_idx))`: this rank's row groups, in batches of `batch_docs`.

    Row groups `rank, rank + W, ...` of each file are read in file order. `start` begins at a
    given row group (default `(0, rank)`), continuing by strides of W; a row-group index past the
    end of a file moves on to the next file. Every batch carries the position of its row group;
    use :func:`resume_position` to resume after it. With `loop=True` the files repeat forever.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    if batch_docs < 1:
        raise ValueError("batch_docs must be >= 1")
    file_idx, rg_idx = start if start is not None else (0, rank)
    if not 0 <= file_idx <= len(files):
        raise ValueError(f"start file index {file_idx} outside 0..{len(files)}")
    if rg_idx < 0:
        raise ValueError(f"start row-group index {rg_idx} is negative")
    while True:
        yielded = False
        for fi in range(file_idx, len(files)):
            parquet = pq.ParquetFile(files[fi])
            try:
                first = rg_idx if fi == file_idx else rank
                for rg in range(first, parquet.num_row_groups, world_size):
                    texts = parquet.read_row_group(rg, columns=["text"]).column("text").to_pylist()
                    for i in range(0, len(texts), batch_docs):
                        yielded = True
                        yield texts[i : i + batch_docs], (fi, rg)
            finally:
                parquet.close()
        if not loop:
            return
        if not yielded and (file_idx, rg_idx) == (0, rank):
            raise ValueError(f"rank {rank} of {world_size} has no row groups in {len(files)} files")
        file_idx, rg_idx = 0, rank


def text_iterator_for_tokenizer(files: Sequence[str], max_chars: int, doc_cap: int) -> Iterator[str]:
    """Documents cut to their first `doc_cap` chars, in order, stopping once more than `max_chars` chars
    have been yielded (ORIG's rule: the last document is kept whole, up to `doc_cap`)."""
    from nanochat_core.tokenizer import truncated_docs

    yield from truncated_docs((text for texts, _ in iter_documents(files) for text in texts), max_chars, doc_cap)
