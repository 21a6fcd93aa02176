"""bench.bundle, bench.atomic, bench.hashing: manifest of every file, signature over its exact bytes."""

from __future__ import annotations

import json
import os

import pytest

from bench import signing
from bench.atomic import write_atomic, write_json_atomic
from bench.bundle import BundleError, build_manifest, bundle_files, manifest_bytes, write_bundle
from bench.hashing import hash_tree, sha256_bytes, sha256_file, tree_digests

try:
    from tests.bench.harness_fixtures import make_run_dir
except ImportError:
    from harness_fixtures import make_run_dir


@pytest.fixture
def key_dir(tmp_path, monkeypatch):
    d = tmp_path / "keys"
    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(d))
    return d


def test_manifest_covers_every_file_except_artifacts_and_itself(tmp_path, key_dir):
    run = make_run_dir(tmp_path)
    info = write_bundle(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "events.jsonl",
        "logs/pretrain.log",
        "phases/base_eval/core.csv",
        "power.csv",
        "result.json",
    ]
    assert info.files == 5
    entry = manifest["files"]["result.json"]
    assert entry["sha256"] == sha256_file(run / "result.json")
    assert entry["size"] == (run / "result.json").stat().st_size


def test_signature_is_over_exact_manifest_bytes(tmp_path, key_dir):
    run = make_run_dir(tmp_path)
    info = write_bundle(run)
    sig = json.loads((run / "manifest.sig").read_text())
    assert sig["algorithm"] == "ed25519"
    assert sig["public_key"] == signing.public_key_hex() == info.public_key
    assert sig["key_fingerprint"] == signing.key_fingerprint()
    data = (run / "manifest.json").read_bytes()
    assert data == manifest_bytes(build_manifest(run))
    assert signing.verify_signature(sig["public_key"], sig["signature"], data)


def test_rebundling_is_deterministic(tmp_path, key_dir):
    run = make_run_dir(tmp_path)
    write_bundle(run)
    first = (run / "manifest.json").read_bytes()
    write_bundle(run)
    assert (run / "manifest.json").read_bytes() == first  # old manifest/sig are not hashed into the new one


def test_symlink_refused(tmp_path, key_dir):
    run = make_run_dir(tmp_path)
    os.symlink(run / "result.json", run / "alias.json")
    with pytest.raises(BundleError, match="alias.json"):
        write_bundle(run)


def test_symlinks_inside_artifacts_are_ignored(tmp_path):
    run = make_run_dir(tmp_path)
    os.symlink("/etc/hostname", run / "artifacts" / "link")
    assert "artifacts/link" not in bundle_files(run)


def test_write_atomic_replaces_and_sets_mode(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    write_atomic(target, "one")
    write_atomic(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_write_atomic_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "r.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(target, {"a": float("nan")})  # NaN is not JSON
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_hash_tree_stable_and_sensitive(tmp_path):
    a = tmp_path / "a"
    (a / "pkg" / "__pycache__").mkdir(parents=True)
    (a / "pkg" / "x.py").write_text("x = 1\n")
    (a / "pkg" / "y.py").write_text("y = 2\n")
    (a / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00")
    (a / "notes.txt").write_text("hi")
    h = hash_tree(a, include=["*.py"], exclude=["__pycache__"])
    assert sorted(tree_digests(a, include=["*.py"])) == ["pkg/x.py", "pkg/y.py"]
    assert "pkg/__pycache__/x.cpython-311.pyc" not in tree_digests(a, exclude=["__pycache__"])
    # same content elsewhere -> same hash
    b = tmp_path / "b"
    (b / "pkg").mkdir(parents=True)
    (b / "pkg" / "y.py").write_text("y = 2\n")
    (b / "pkg" / "x.py").write_text("x = 1\n")
    assert hash_tree(b, include=["*.py"]) == h
    (b / "pkg" / "x.py").write_text("x = 2\n")
    assert hash_tree(b, include=["*.py"]) != h
    (b / "pkg" / "x.py").write_text("x = 1\n")
    os.rename(b / "pkg" / "x.py", b / "pkg" / "z.py")  # a rename changes the hash too
    assert hash_tree(b, include=["*.py"]) != h
    assert sha256_bytes(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
