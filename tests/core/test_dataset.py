"""nanochat_core.dataset: shard URLs and downloads, the shipped corpus, row-group iteration."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httpserver import FileServer  # noqa: E402

from nanochat_core import dataset  # noqa: E402
from nanochat_core.download import DownloadError, Manifest, sha256_file  # noqa: E402

REPO_PATH = "datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main"


def write_parquet(path: Path, texts: list[str], row_group: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), sink, row_group_size=row_group)
    path.write_bytes(sink.getvalue())
    return sink.getvalue()


# ---------------------------------------------------------------- URLs and downloads


def test_shard_names_and_urls(monkeypatch):
    assert dataset.shard_filename(7) == "shard_00007.parquet"
    assert dataset.shard_filename(1822) == "shard_01822.parquet"
    with pytest.raises(ValueError):
        dataset.shard_filename(1823)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert dataset.shard_url(3) == f"https://huggingface.co/{REPO_PATH}/shard_00003.parquet"
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local/")  # read at call time
    assert dataset.shard_url(3) == f"http://mirror.local/{REPO_PATH}/shard_00003.parquet"
    assert dataset.shard_url(3, "http://x") == f"http://x/{REPO_PATH}/shard_00003.parquet"


@pytest.fixture()
def hub(tmp_path: Path):
    """A fake hub serving 4 small shards under the real repository path."""
    root = tmp_path / "hub"
    shard_dir = root / REPO_PATH
    shard_dir.mkdir(parents=True)
    blobs = {}
    for i in range(4):
        blobs[i] = write_parquet(shard_dir / dataset.shard_filename(i), [f"doc {i}-{j}" for j in range(10)], 5)
    with FileServer(root) as srv:
        yield srv, blobs


def test_download_shards_parallel_with_manifest(hub, tmp_path):
    srv, blobs = hub
    data_dir = tmp_path / "data"
    done = []
    paths = dataset.download_shards(
        data_dir, [2, 0, 1], endpoint=srv.base_url, workers=3, backoff=0.01, on_complete=done.append
    )
    assert sorted(done) == sorted(paths)
    assert [Path(p).name for p in paths] == ["shard_00002.parquet", "shard_00000.parquet", "shard_00001.parquet"]
    for i in (0, 1, 2):
        assert (data_dir / dataset.shard_filename(i)).read_bytes() == blobs[i]
    entries = json.loads((data_dir / "manifest.json").read_text())
    assert entries["shard_00001.parquet"]["sha256"] == hashlib.sha256(blobs[1]).hexdigest()
    assert entries["shard_00001.parquet"]["url"] == f"{srv.base_url}/{REPO_PATH}/shard_00001.parquet"
    # second call: everything present and intact, nothing fetched
    dataset.download_shards(data_dir, [0, 1, 2], endpoint=srv.base_url, backoff=0.01)
    assert len(srv.gets(".parquet")) == 3


def test_corrupt_shard_is_detected_and_refetched(hub, tmp_path):
    srv, blobs = hub
    data_dir = tmp_path / "data"
    dataset.download_shards(data_dir, [0], endpoint=srv.base_url, backoff=0.01)
    shard = data_dir / "shard_00000.parquet"
    damaged = bytearray(shard.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    shard.write_bytes(bytes(damaged))
    dataset.download_shards(data_dir, [0], endpoint=srv.base_url, backoff=0.01)
    assert shard.read_bytes() == blobs[0]
    assert len(srv.gets("shard_00000.parquet")) == 2


def test_truncated_shard_is_detected(hub, tmp_path):
    srv, _ = hub
    srv.faults.truncate_to = 100
    data_dir = tmp_path / "data"
    with pytest.raises(DownloadError, match="shard 3"):
        dataset.download_shards(data_dir, [3], endpoint=srv.base_url, retries=2, backoff=0.01)
    assert not (data_dir / "shard_00003.parquet").exists()
    assert dataset.list_parquet_files(data_dir) == []


def test_background_download_overlaps_and_reports(hub, tmp_path):
    srv, blobs = hub
    handle = dataset.start_background_download(tmp_path / "d", range(4), endpoint=srv.base_url, workers=2, backoff=0.01)
    paths = handle.wait(timeout=30)
    assert handle.done
    assert [Path(p).read_bytes() for p in paths] == [blobs[i] for i in range(4)]

    failing = dataset.start_background_download(tmp_path / "e", [5], endpoint=srv.base_url, retries=1, backoff=0.01)
    with pytest.raises(DownloadError, match="HTTP 404"):
        failing.wait(timeout=30)


# ---------------------------------------------------------------- shipped corpus


def test_shipped_corpus_hashes_match_the_shared_readme():
    for name, digest in dataset.SHIPPED_CORPUS_SHA256.items():
        assert sha256_file(dataset.SHIPPED_CORPUS_DIR / name) == digest
    readme = (dataset.SHIPPED_CORPUS_DIR / "README.md").read_text()
    assert readme.splitlines()[0].startswith("_Copied") and "License" in readme


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> list[str]:
    return dataset.materialize_shipped_corpus(tmp_path_factory.mktemp("shipped"))


def test_shipped_corpus_materializes_byte_identically(shipped, tmp_path):
    again = dataset.materialize_shipped_corpus(tmp_path / "again")
    assert [Path(p).name for p in shipped] == ["shard_00000.parquet", "shard_00001.parquet", "shard_00002.parquet"]
    assert [Path(p).read_bytes() for p in again] == [Path(p).read_bytes() for p in shipped]
    manifest = Manifest(Path(shipped[0]).parent / "manifest.json")
    for p in shipped:
        assert manifest.get(Path(p).name)["sha256"] == sha256_file(p)


def test_shipped_shards_hold_every_document_in_order(shipped):
    def source(name):
        with gzip.open(dataset.SHIPPED_CORPUS_DIR / name, "rt", encoding="utf-8") as fh:
            return [json.loads(line)["text"] for line in fh]

    train, val = dataset.split_files(shipped)
    assert val == shipped[-1] and train == shipped[:-1]
    train_texts = [t for p in train for t in pq.read_table(p).column("text").to_pylist()]
    assert train_texts == source("corpus_train.jsonl.gz")
    assert pq.read_table(val).column("text").to_pylist() == source("corpus_val.jsonl.gz")
    meta = pq.ParquetFile(train[0]).metadata
    assert meta.schema.names == ["text"] and meta.row_group(0).num_rows == 64
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_list_and_split(tmp_path):
    for name in ["shard_00002.parquet", "shard_00000.parquet", "notes.txt", "shard_00001.parquet.part"]:
        (tmp_path / name).write_bytes(b"")
    files = dataset.list_parquet_files(tmp_path)
    assert [Path(f).name for f in files] == ["shard_00000.parquet", "shard_00002.parquet"]
    assert dataset.split_files(files) == ([files[0]], files[1])
    with pytest.raises(ValueError):
        dataset.split_files(files[:1])
    assert dataset.list_parquet_files(tmp_path / "absent") == []


# ---------------------------------------------------------------- iteration


@pytest.fixture()
def numbered(tmp_path) -> list[str]:
    """3 files of 3, 2, 4 row groups; each row group holds 3 docs named 'f<file>r<rg>d<doc>'."""
    paths = []
    for fi, n_rg in enumerate([3, 2, 4]):
        texts = [f"f{fi}r{rg}d{d}" for rg in range(n_rg) for d in range(3)]
        path = tmp_path / f"shard_{fi:05d}.parquet"
        write_parquet(path, texts, 3)
        paths.append(str(path))
    return paths


def positions(it):
    return [pos for _, pos in it]


def test_iter_documents_strides_ranks(numbered):
    all_rgs = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (2, 3)]
    assert positions(dataset.iter_documents(numbered)) == all_rgs
    rank0 = positions(dataset.iter_documents(numbered, rank=0, world_size=2))
    rank1 = positions(dataset.iter_documents(numbered, rank=1, world_size=2))
    assert rank0 == [(0, 0), (0, 2), (1, 0), (2, 0), (2, 2)]
    assert rank1 == [(0, 1), (1, 1), (2, 1), (2, 3)]
    assert sorted(rank0 + rank1) == all_rgs
    texts, pos = next(dataset.iter_documents(numbered, rank=1, world_size=2))
    assert texts == ["f0r1d0", "f0r1d1", "f0r1d2"] and pos == (0, 1)


def test_iter_documents_batches_within_row_group(numbered):
    batches = list(dataset.iter_documents(numbered[:1], batch_docs=2))
    assert batches[:2] == [(["f0r0d0", "f0r0d1"], (0, 0)), (["f0r0d2"], (0, 0))]


def test_iter_documents_resumes_from_a_state(numbered):
    full = list(dataset.iter_documents(numbered, rank=1, world_size=2))
    state = full[1][1]  # consumed through row group (1, 1)
    resumed = list(dataset.iter_documents(numbered, rank=1, world_size=2, start=dataset.resume_position(state, 2)))
    assert resumed == full[2:]
    # a row-group index past the end of its file moves on to the next file
    assert positions(dataset.iter_documents(numbered, start=(0, 7))) == positions(dataset.iter_documents(numbered))[3:]


def test_iter_documents_loop_repeats_forever(numbered):
    it = dataset.iter_documents(numbered, rank=0, world_size=2, start=(2, 2), loop=True)
    got = [next(it)[1] for _ in range(4)]
    assert got == [(2, 2), (0, 0), (0, 2), (1, 0)]
    with pytest.raises(ValueError, match="no row groups"):
        next(dataset.iter_documents(numbered[1:2], rank=3, world_size=4, loop=True))


def test_text_iterator_caps_docs_and_total(numbered):
    docs = list(dataset.text_iterator_for_tokenizer(numbered, max_chars=20, doc_cap=4))
    assert docs == ["f0r0", "f0r0", "f0r0", "f0r1", "f0r1", "f0r1"]  # reaching exactly 20 does not stop (ORIG)
    docs = list(dataset.text_iterator_for_tokenizer(numbered, max_chars=14, doc_cap=100))
    assert docs == ["f0r0d0", "f0r0d1", "f0r0d2"]  # the last document is kept whole (ORIG)
    assert sum(len(d) for d in dataset.text_iterator_for_tokenizer(numbered, 10**9, 100)) == 27 * 6
