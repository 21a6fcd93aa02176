"""Hub parquet loader against a local fake of the Hugging Face parquet export (127.0.0.1 only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httpserver import FileServer  # noqa: E402

from nanochat_core.download import DownloadError, Manifest, sha256_file  # noqa: E402
from nanochat_core.tasks import ARC, GSM8K, MMLU  # noqa: E402
from nanochat_core.tasks.hub import ensure_split, split_dir, task_data_dir  # noqa: E402

GSM_ROWS = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"} for i in range(30)]


def publish(srv: FileServer, root: Path, repo: str, subset: str, split: str, shards: list[list[dict]]) -> None:
    """Write parquet shards + the listing JSON the hub API would answer."""
    urls = []
    for i, rows in enumerate(shards):
        rel = f"files/{repo.replace('/', '_')}/{subset}/{split}/{i}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), root / rel)
        urls.append(srv.url(rel))
    listing = root / "api" / "datasets" / repo / "parquet" / subset / split
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(json.dumps(urls))


@pytest.fixture()
def hub(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    with FileServer(root) as srv:
        publish(srv, root, "openai/gsm8k", "main", "train", [GSM_ROWS[:12], GSM_ROWS[12:]])
        yield srv, root


def test_download_shuffle_and_manifest(hub, tmp_path):
    srv, _ = hub
    cache = tmp_path / "cache"
    task = GSM8K("main", "train", source="download", cache_dir=cache, endpoint=srv.base_url)
    assert task.num_examples() == 30
    perm = np.random.default_rng(42).permutation(30)
    for i in range(30):
        conv = task.get_example(i)
        assert conv["messages"][0]["content"] == GSM_ROWS[perm[i]]["question"]
    assert conv["messages"][1]["content"][1] == {"type": "python", "text": f"{perm[29]}+1"}
    shards = sorted(split_dir(cache, "openai/gsm8k", "main", "train").glob("*.parquet"))
    assert len(shards) == 2
    entries = Manifest(task_data_dir(cache) / "manifest.json").entries()
    assert {k: v["sha256"] for k, v in entries.items()} == {
        p.relative_to(task_data_dir(cache)).as_posix(): sha256_file(p) for p in shards
    }


def test_cache_hit_makes_no_requests(hub, tmp_path):
    srv, _ = hub
    cache = tmp_path / "cache"
    GSM8K("main", "train", source="download", cache_dir=cache, endpoint=srv.base_url)
    n = len(srv.gets())
    assert n == 3  # listing + 2 shards
    again = GSM8K("main", "train", source="download", cache_dir=cache, endpoint=srv.base_url)
    assert again.num_examples() == 30
    assert len(srv.gets()) == n


def test_corrupt_shard_is_refetched(hub, tmp_path):
    srv, _ = hub
    cache = tmp_path / "cache"
    paths = ensure_split("openai/gsm8k", "main", "train", cache, endpoint=srv.base_url)
    good = paths[1].read_bytes()
    paths[1].write_bytes(b"garbage" + good[7:])
    before = len(srv.gets())
    task = GSM8K("main", "train", source="download", cache_dir=cache, endpoint=srv.base_url)
    assert paths[1].read_bytes() == good
    assert len(srv.gets()) == before + 1 and srv.gets()[-1][1].endswith("/1.parquet")
    assert task.num_examples() == 30


def test_missing_split_raises_download_error(hub, tmp_path):
    srv, _ = hub
    with pytest.raises(DownloadError, match="parquet shards"):
        GSM8K("main", "test", source="download", cache_dir=tmp_path / "cache", endpoint=srv.base_url)


def test_hub_row_formats_mmlu_aux_and_arc(hub, tmp_path):
    srv, root = hub
    aux = [{"train": {"question": f"q{i}", "subject": "", "choices": ["w", "x", "y", "z"], "answer": i % 4}} for i in range(8)]
    publish(srv, root, "cais/mmlu", "auxiliary_train", "train", [aux])
    arc = [
        {"id": f"id{i}", "question": f"arc q{i}", "choices": {"text": ["p", "q", "r"], "label": ["1", "2", "3"]}, "answerKey": "2"}
        for i in range(5)
    ]
    publish(srv, root, "allenai/ai2_arc", "ARC-Challenge", "train", [arc])
    cache = tmp_path / "cache"
    mmlu = MMLU("auxiliary_train", "train", source="download", cache_dir=cache, endpoint=srv.base_url)
    perm = np.random.default_rng(42).permutation(8)
    conv = mmlu.get_example(0)
    assert conv["messages"][0]["content"].startswith(f"Multiple Choice question: q{perm[0]}\n- w=A")
    assert conv["messages"][1]["content"] == "ABCD"[perm[0] % 4]
    task = ARC("ARC-Challenge", "train", source="download", cache_dir=cache, endpoint=srv.base_url)
    conv = task.get_example(0)
    assert conv["letters"] == ["1", "2", "3"] and conv["messages"][1]["content"] == "2"
    assert "- q=2" in conv["messages"][0]["content"]
    # issue 16 item 14: download presets evaluate the hub's ARC rows (labels as published), and say so
    publish(srv, root, "allenai/ai2_arc", "ARC-Easy", "test", [arc])
    from nanochat_core.tasks import eval_task, task_provenance

    hub_arc = eval_task("ARC-Easy", source="download", cache_dir=cache, endpoint=srv.base_url)
    assert hub_arc.num_examples() == 5 and hub_arc.get_example(0)["letters"] == ["1", "2", "3"]
    assert task_provenance(hub_arc).startswith("Hugging Face allenai/ai2_arc ARC-Easy/test")
    assert "A-D by position" in task_provenance(eval_task("ARC-Easy", source="shipped", stop=2))
