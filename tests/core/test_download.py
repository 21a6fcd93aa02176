"""nanochat_core.download against a real local HTTP server that misbehaves on demand."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httpserver import FileServer  # noqa: E402

from nanochat_core.download import DownloadError, Manifest, download_file, ensure, sha256_file  # noqa: E402

FAST = {"backoff": 0.01, "timeout": 5}


@pytest.fixture()
def payload() -> bytes:
    return os.urandom(300_000)


@pytest.fixture()
def server(tmp_path: Path, payload: bytes):
    root = tmp_path / "srv"
    root.mkdir()
    (root / "blob.bin").write_bytes(payload)
    with FileServer(root) as srv:
        yield srv


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_plain_download_returns_hash_and_leaves_no_part(server, tmp_path, payload):
    dest = tmp_path / "out" / "blob.bin"
    seen = []
    got = download_file(server.url("blob.bin"), dest, sha256=sha(payload), progress=lambda d, t: seen.append((d, t)), **FAST)
    assert got == sha(payload)
    assert dest.read_bytes() == payload
    assert not Path(str(dest) + ".part").exists()
    assert seen[-1] == (len(payload), len(payload))


def test_resumes_partial_file_with_range(server, tmp_path, payload):
    dest = tmp_path / "blob.bin"
    Path(str(dest) + ".part").write_bytes(payload[:100_000])
    download_file(server.url("blob.bin"), dest, **FAST)
    assert dest.read_bytes() == payload
    assert [(r[2], r[3]) for r in server.gets("blob.bin")] == [("bytes=100000-", 206)]


def test_resume_follows_redirect_with_range(server, tmp_path, payload):
    dest = tmp_path / "blob.bin"
    Path(str(dest) + ".part").write_bytes(payload[:5000])
    download_file(server.url("redirect/blob.bin"), dest, sha256=sha(payload), **FAST)
    assert dest.read_bytes() == payload
    assert [(r[1], r[2], r[3]) for r in server.gets("blob.bin")] == [
        ("/redirect/blob.bin", "bytes=5000-", 302),
        ("/blob.bin", "bytes=5000-", 206),
    ]


def test_complete_part_file_is_finished_without_refetch(server, tmp_path, payload):
    dest = tmp_path / "blob.bin"
    Path(str(dest) + ".part").write_bytes(payload)  # e.g. a crash between the last write and the rename
    assert download_file(server.url("blob.bin"), dest, **FAST) == sha(payload)
    assert dest.read_bytes() == payload
    assert [r[3] for r in server.gets("blob.bin")] == [416]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, payload):
    server.faults.support_range = False
    dest = tmp_path / "blob.bin"
    Path(str(dest) + ".part").write_bytes(b"stale bytes that must not survive")
    download_file(server.url("blob.bin"), dest, sha256=sha(payload), **FAST)
    assert dest.read_bytes() == payload
    assert [r[3] for r in server.gets("blob.bin")] == [200]


def test_retry_after_dropped_connection_resumes(server, tmp_path, payload):
    server.faults.drop_once_after = 70_000
    dest = tmp_path / "blob.bin"
    download_file(server.url("blob.bin"), dest, sha256=sha(payload), **FAST)
    assert dest.read_bytes() == payload
    gets = server.gets("blob.bin")
    assert len(gets) == 2
    assert gets[0][2] is None
    assert gets[1][2] is not None and gets[1][3] == 206  # second attempt resumed


def test_retry_after_500(server, tmp_path, payload):
    server.faults.fail_500_times = 2
    dest = tmp_path / "blob.bin"
    download_file(server.url("blob.bin"), dest, **FAST)
    assert dest.read_bytes() == payload
    assert [r[3] for r in server.gets("blob.bin")] == [500, 500, 200]


def test_persistent_5xx_gives_up_with_clear_error(server, tmp_path):
    server.faults.fail_500_times = 100
    with pytest.raises(DownloadError, match=r"after 3 attempts.*HTTP 500"):
        download_file(server.url("blob.bin"), tmp_path / "blob.bin", retries=3, **FAST)
    assert len(server.gets("blob.bin")) == 3


def test_truncated_body_is_detected(server, tmp_path):
    server.faults.truncate_to = 1000  # Content-Length says the full size every time
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match="truncated|connection lost"):
        download_file(server.url("blob.bin"), dest, retries=2, **FAST)
    assert not dest.exists()


def test_silently_truncated_file_caught_by_expected_size(server, tmp_path, payload):
    server.faults.truncate_to = 1000
    server.faults.honest_length = True  # the server lies consistently: only size/hash can tell
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match=f"expected {len(payload)}"):
        download_file(server.url("blob.bin"), dest, expected_size=len(payload), retries=2, **FAST)
    assert not dest.exists()


def test_sha_mismatch_retries_once_then_names_url_and_hashes(server, tmp_path, payload):
    server.faults.corrupt = True
    dest = tmp_path / "blob.bin"
    url = server.url("blob.bin")
    with pytest.raises(DownloadError) as info:
        download_file(url, dest, sha256=sha(payload), **FAST)
    message = str(info.value)
    assert url in message and sha(payload) in message
    corrupt = bytes([payload[0] ^ 0xFF]) + payload[1:]
    assert sha(corrupt) in message
    assert len(server.gets("blob.bin")) == 2
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


def test_404_is_a_clear_error_without_retries(server, tmp_path):
    url = server.url("missing.bin")
    with pytest.raises(DownloadError, match=r"missing\.bin.*HTTP 404"):
        download_file(url, tmp_path / "missing.bin", **FAST)
    assert len(server.gets("missing.bin")) == 1


def test_connection_refused_is_retried_then_raised(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot connect"):
        download_file(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin", retries=2, **FAST)


def test_non_http_url_rejected(tmp_path):
    with pytest.raises(DownloadError, match="http"):
        download_file("file:///etc/passwd", tmp_path / "p")


def test_concurrent_threads_fetch_once(server, tmp_path, payload):
    server.faults.chunk_delay = 0.02  # ~5 chunks: slow enough for the second caller to wait
    dest = tmp_path / "blob.bin"
    results, errors = [], []

    def worker():
        try:
            results.append(download_file(server.url("blob.bin"), dest, sha256=sha(payload), **FAST))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert results == [sha(payload)] * 3
    assert dest.read_bytes() == payload
    assert len(server.gets("blob.bin")) == 1


def test_concurrent_processes_do_not_corrupt(server, tmp_path, payload):
    server.faults.chunk_delay = 0.1  # ~0.5 s transfer, longer than interpreter start-up
    dest = tmp_path / "blob.bin"
    code = (
        "import sys; from nanochat_core.download import download_file; "
        "print(download_file(sys.argv[1], sys.argv[2], backoff=0.01, timeout=5))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, server.url("blob.bin"), str(dest)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == [sha(payload)] * 2
    assert dest.read_bytes() == payload
    assert len(server.gets("blob.bin")) == 1


def test_manifest_round_trip_is_atomic_json(tmp_path):
    manifest = Manifest(tmp_path / "m" / "manifest.json")
    assert manifest.get("a") is None
    manifest.record("a", sha256="00" * 32, size=3, url="http://x/a")
    manifest.record("b", sha256="11" * 32, size=4, url="http://x/b")
    on_disk = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert on_disk == {
        "a": {"sha256": "00" * 32, "size": 3, "url": "http://x/a"},
        "b": {"sha256": "11" * 32, "size": 4, "url": "http://x/b"},
    }
    assert [p.name for p in (tmp_path / "m").iterdir() if p.name.endswith(".tmp")] == []


def test_ensure_trusts_first_use_then_skips(server, tmp_path, payload):
    manifest = Manifest(tmp_path / "manifest.json")
    dest = tmp_path / "blob.bin"
    assert ensure(server.url("blob.bin"), dest, manifest, **FAST) == sha(payload)
    assert manifest.get("blob.bin") == {"sha256": sha(payload), "size": len(payload), "url": server.url("blob.bin")}
    ensure(server.url("blob.bin"), dest, manifest, **FAST)
    assert len(server.gets("blob.bin")) == 1


def test_ensure_detects_corrupt_file_and_refetches(server, tmp_path, payload):
    manifest = Manifest(tmp_path / "manifest.json")
    dest = tmp_path / "blob.bin"
    ensure(server.url("blob.bin"), dest, manifest, **FAST)
    dest.write_bytes(payload[:-10] + b"0123456789")  # bit rot, same size
    assert ensure(server.url("blob.bin"), dest, manifest, **FAST) == sha(payload)
    assert dest.read_bytes() == payload
    assert len(server.gets("blob.bin")) == 2


def test_ensure_raises_when_source_changed_since_first_use(server, tmp_path, payload):
    manifest = Manifest(tmp_path / "manifest.json")
    dest = tmp_path / "blob.bin"
    ensure(server.url("blob.bin"), dest, manifest, **FAST)
    dest.unlink()
    server.faults.corrupt = True
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        ensure(server.url("blob.bin"), dest, manifest, **FAST)
    assert not dest.exists()
    assert manifest.get("blob.bin")["sha256"] == sha(payload)  # the recorded hash is not overwritten


def test_ensure_records_an_existing_file_without_fetching(server, tmp_path, payload):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(payload)
    manifest = Manifest(tmp_path / "manifest.json")
    ensure(server.url("blob.bin"), dest, manifest, **FAST)
    assert manifest.get("blob.bin")["sha256"] == sha256_file(dest)
    assert server.gets("blob.bin") == []
