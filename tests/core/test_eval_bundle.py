"""nanochat_core.evals.bundle: lazy download, trust-on-first-use hash, safe unzip."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import threading
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httpserver import FileServer  # noqa: E402

from nanochat_core.download import DownloadError, Manifest  # noqa: E402
from nanochat_core.evals import bundle  # noqa: E402

BUNDLE_FILES = {
    "eval_bundle/core.yaml": "icl_tasks:\n- label: copa\n  dataset_uri: commonsense_reasoning/copa.jsonl\n",
    "eval_bundle/eval_meta_data.csv": "Eval Task,Random baseline\ncopa,50\n",
    "eval_bundle/eval_data/commonsense_reasoning/copa.jsonl": '{"query": "q", "choices": ["a", "b"], "gold": 0}\n',
}


def make_zip(path: Path, members: dict[str, str | bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("eval_bundle/", "")
        for name, text in members.items():
            zf.writestr(name, text)
    return path.read_bytes()


@pytest.fixture()
def served(tmp_path):
    root = tmp_path / "s3"
    root.mkdir()
    blob = make_zip(root / "eval_bundle.zip", BUNDLE_FILES)
    with FileServer(root) as srv:
        yield srv, blob


def test_download_unzip_and_reuse(served, tmp_path, monkeypatch):
    srv, blob = served
    monkeypatch.setenv(bundle.EVAL_BUNDLE_URL_ENV, srv.url("eval_bundle.zip"))  # read at call time
    out = bundle.ensure_eval_bundle(tmp_path / "cache", backoff=0.01)
    assert out == tmp_path / "cache" / "eval_bundle"
    assert (out / "core.yaml").read_text() == BUNDLE_FILES["eval_bundle/core.yaml"]
    assert (out / "eval_data" / "commonsense_reasoning" / "copa.jsonl").is_file()
    assert (out / "eval_meta_data.csv").is_file()
    entry = Manifest(tmp_path / "cache" / "manifest.json").get("eval_bundle.zip")
    assert entry["sha256"] == hashlib.sha256(blob).hexdigest()
    assert bundle.ensure_eval_bundle(tmp_path / "cache") == out
    assert len(srv.gets("eval_bundle.zip")) == 1


def test_default_url_is_the_public_bundle(monkeypatch):
    monkeypatch.delenv(bundle.EVAL_BUNDLE_URL_ENV, raising=False)
    assert bundle.eval_bundle_url() == "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"


def test_resumes_a_partial_bundle(served, tmp_path):
    srv, blob = served
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "eval_bundle.zip.part").write_bytes(blob[:200])
    out = bundle.ensure_eval_bundle(cache, url=srv.url("eval_bundle.zip"), backoff=0.01)
    assert (out / "core.yaml").is_file()
    assert [r[2] for r in srv.gets("eval_bundle.zip")] == ["bytes=200-"]


def test_corrupt_zip_on_disk_is_refetched(served, tmp_path):
    srv, blob = served
    cache = tmp_path / "cache"
    url = srv.url("eval_bundle.zip")
    bundle.ensure_eval_bundle(cache, url=url, backoff=0.01)
    damaged = bytearray(blob)
    damaged[40] ^= 0xFF
    (cache / "eval_bundle.zip").write_bytes(bytes(damaged))
    (cache / "eval_bundle" / bundle.COMPLETE_MARKER).unlink()  # extraction interrupted
    out = bundle.ensure_eval_bundle(cache, url=url, backoff=0.01)
    assert (cache / "eval_bundle.zip").read_bytes() == blob
    assert (out / "core.yaml").is_file()
    assert len(srv.gets("eval_bundle.zip")) == 2


def test_concurrent_callers_share_one_download(tmp_path):
    root = tmp_path / "s3"
    root.mkdir()
    padding = {"eval_bundle/eval_data/padding.bin": os.urandom(256 * 1024)}  # 4 slow chunks
    make_zip(root / "eval_bundle.zip", {**BUNDLE_FILES, **padding})
    with FileServer(root) as srv:
        srv.faults.chunk_delay = 0.1
        _race_two_callers(srv, tmp_path)


def _race_two_callers(srv: FileServer, tmp_path: Path) -> None:
    results, errors = [], []

    def call():
        try:
            results.append(bundle.ensure_eval_bundle(tmp_path / "cache", url=srv.url("eval_bundle.zip")))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert len(srv.gets("eval_bundle.zip")) == 1


@pytest.mark.parametrize("evil", ["../escape.txt", "eval_bundle/../../escape.txt", "/abs/escape.txt", "C:/escape.txt"])
def test_zip_slip_members_are_rejected(tmp_path, evil):
    root = tmp_path / "s3"
    root.mkdir()
    make_zip(root / "eval_bundle.zip", {**BUNDLE_FILES, evil: "pwned"})
    with FileServer(root) as srv:
        with pytest.raises(bundle.UnsafeArchiveError, match="escape"):
            bundle.ensure_eval_bundle(tmp_path / "cache", url=srv.url("eval_bundle.zip"), backoff=0.01)
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "cache" / "eval_bundle").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".eval_bundle.")] == []


def test_symlink_members_are_rejected(tmp_path):
    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("eval_bundle/core.yaml")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(bundle.UnsafeArchiveError, match="link"):
        bundle.safe_extract(path, tmp_path / "out")


def test_archive_without_core_yaml_is_an_error(tmp_path):
    root = tmp_path / "s3"
    root.mkdir()
    make_zip(root / "eval_bundle.zip", {"eval_bundle/readme.txt": "not a bundle"})
    with FileServer(root) as srv:
        with pytest.raises(DownloadError, match="core.yaml"):
            bundle.ensure_eval_bundle(tmp_path / "cache", url=srv.url("eval_bundle.zip"), backoff=0.01)
    assert not (tmp_path / "cache" / "eval_bundle").exists()


def test_flat_archive_extracts_in_place(tmp_path):
    path = tmp_path / "flat.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("core.yaml", "icl_tasks: []\n")
        zf.writestr("eval_data/x.jsonl", "{}\n")
    bundle.safe_extract(path, tmp_path / "out")
    assert (tmp_path / "out" / "core.yaml").is_file() and (tmp_path / "out" / "eval_data" / "x.jsonl").is_file()
