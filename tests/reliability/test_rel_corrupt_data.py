"""Faults: truncated or corrupt data shards and eval files are detected by hash (or CRC) and re-made,
re-fetched, or reported with an error that names the file — never used silently.

Already covered elsewhere (referenced in docs/reliability.md, not repeated): downloaded FineWeb shards
corrupt/truncated -> re-fetched (tests/core/test_dataset.py), CORE bundle zip corrupt -> re-fetched
(tests/core/test_eval_bundle.py), task-data shards (tests/core/test_hub.py), network drop mid-download
-> Range resume (tests/core/test_download.py).
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from nanochat_core import dataset
from nanochat_core.download import DownloadError, sha256_file
from nanochat_core.evals import core_tasks


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("shipped") / "shipped_corpus"
    dataset.materialize_shipped_corpus(data_dir, docs_per_row_group=4)
    return data_dir


def _manifest(data_dir: Path) -> dict:
    return json.loads((data_dir / "manifest.json").read_text())


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "zero"])
def test_damaged_cached_corpus_shard_is_detected_and_remade(shipped, tmp_path, damage):
    data_dir = tmp_path / "shipped_corpus"
    shutil.copytree(shipped, data_dir)
    victim = data_dir / "shard_00001.parquet"
    good = _manifest(data_dir)[victim.name]["sha256"]
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        victim.write_bytes(bytes(data[: len(data) // 3]))
    elif damage == "flip":
        data[len(data) // 2] ^= 0x40
        victim.write_bytes(bytes(data))
    elif damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(b"\0" * len(data))
    dataset.materialize_shipped_corpus(data_dir, docs_per_row_group=4)  # what the download phase runs
    assert sha256_file(victim) == good
    assert {n: e["sha256"] for n, e in _manifest(data_dir).items()} == {n: e["sha256"] for n, e in _manifest(shipped).items()}


def test_corrupt_shipped_corpus_source_is_a_clear_error(tmp_path, monkeypatch):
    source = tmp_path / "corpus"
    shutil.copytree(dataset.SHIPPED_CORPUS_DIR, source)
    damaged = source / "corpus_val.jsonl.gz"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    monkeypatch.setattr(dataset, "SHIPPED_CORPUS_DIR", source)
    with pytest.raises(DownloadError) as info:
        dataset.materialize_shipped_corpus(tmp_path / "out", docs_per_row_group=4)
    assert "corpus_val.jsonl.gz" in str(info.value) and "corrupt" in str(info.value)
    assert not (tmp_path / "out" / "shard_00002.parquet").exists()


def _offline_copy(tmp_path: Path) -> Path:
    target = tmp_path / "core"
    shutil.copytree(core_tasks.OFFLINE_DATA_DIR, target)
    return target


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_shipped_eval_file_fails_loudly_and_changes_the_eval_hash(tmp_path, damage, monkeypatch):
    from bench import workload_identity

    data_dir = _offline_copy(tmp_path)
    task = core_tasks.load_offline_tasks(data_dir).tasks[0]
    assert core_tasks.load_task_rows(task)  # intact copy loads
    before = workload_identity.hash_tree(data_dir, include=["*.jsonl.gz", "core.json"])
    data = bytearray(task.path.read_bytes())
    if damage == "truncate":
        task.path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # a bit flip inside the compressed stream: gzip's CRC32 (or the inflater) catches it
        data[len(data) // 2] ^= 0x01
        task.path.write_bytes(bytes(data))
    with pytest.raises((EOFError, gzip.BadGzipFile, OSError, ValueError, core_tasks.CoreDataError)) as info:
        core_tasks.load_task_rows(task)
    assert str(info.value)
    # and the workload identity that verify pins (eval_data_sha256) moves with any change to the files
    assert workload_identity.hash_tree(data_dir, include=["*.jsonl.gz", "core.json"]) != before


def test_missing_shipped_eval_file_names_the_task(tmp_path):
    data_dir = _offline_copy(tmp_path)
    index = json.loads((data_dir / "core.json").read_text())
    entry = next(e for e in index["tasks"] if e.get("status") == "ok" and e.get("file"))
    (data_dir / entry["file"]).unlink()
    with pytest.raises(core_tasks.CoreDataError, match=entry["label"]):
        core_tasks.load_offline_tasks(data_dir)
