"""bench.signing and `nanobench keys show`: key created 0600 on first use, sign/verify, no private key output."""

from __future__ import annotations

import os
import stat

import pytest

from bench import signing
from bench.cli import main


@pytest.fixture
def key_dir(tmp_path, monkeypatch):
    d = tmp_path / "keys"
    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(d))
    return d


def test_key_created_on_first_use_with_0600(key_dir):
    assert not key_dir.exists()
    public = signing.public_key_hex()
    path = key_dir / "signing_key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert len(public) == 64
    assert signing.public_key_hex() == public  # reused, not regenerated
    assert [p.name for p in key_dir.iterdir()] == ["signing_key.pem"]  # no temp file left behind


def test_key_mode_ignores_permissive_umask(key_dir):
    old = os.umask(0)
    try:
        signing.load_or_create_key()
    finally:
        os.umask(old)
    assert stat.S_IMODE((key_dir / "signing_key.pem").stat().st_mode) == 0o600


def test_key_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("NANOBENCH_KEY_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert signing.resolve_key_dir() == tmp_path / "xdg" / "nanobench"
    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(tmp_path / "env"))  # read at call time
    assert signing.resolve_key_dir() == tmp_path / "env"
    assert signing.resolve_key_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.delenv("NANOBENCH_KEY_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert signing.resolve_key_dir() == tmp_path / "home" / ".config" / "nanobench"


def test_sign_and_verify(key_dir):
    data = b"manifest bytes"
    sig = signing.sign(data)
    public = signing.public_key_hex()
    assert len(sig) == 64
    assert signing.verify_signature(public, sig, data)
    assert signing.verify_signature(public, sig.hex(), data)
    assert not signing.verify_signature(public, sig, data + b"!")
    other = signing.public_key_hex(key_dir / "other")
    assert other != public
    assert not signing.verify_signature(other, sig, data)
    assert not signing.verify_signature("zz", sig, data)  # garbage key: False, no exception
    assert not signing.verify_signature(public, "00" * 10, data)


def test_fingerprint_is_derived_from_public_key(key_dir):
    fp = signing.key_fingerprint()
    assert fp == signing.fingerprint_of(signing.public_key_hex())
    assert fp.startswith("SHA256:") and len(fp) == 7 + 32


def test_world_readable_key_refused(key_dir):
    signing.load_or_create_key()
    os.chmod(key_dir / "signing_key.pem", 0o644)
    with pytest.raises(signing.SigningKeyError, match="chmod 600"):
        signing.load_or_create_key()


def test_keys_show_never_creates_a_key(key_dir, capsys):
    assert main(["keys", "show"]) == 1
    err = capsys.readouterr().err
    assert "no signing key yet" in err and "nanobench keys create" in err
    assert not (key_dir / "signing_key.pem").exists() and not key_dir.exists()
    assert main(["keys", "create"]) == 0
    assert "(created now)" in capsys.readouterr().out
    assert (key_dir / "signing_key.pem").exists()


def test_keys_show_prints_public_never_private(key_dir, capsys):
    signing.load_or_create_key()
    assert main(["keys", "show"]) == 0
    out = capsys.readouterr().out
    assert signing.public_key_hex() in out
    assert signing.key_fingerprint() in out
    assert str(key_dir / "signing_key.pem") in out
    pem = (key_dir / "signing_key.pem").read_text()
    body = "".join(pem.strip().splitlines()[1:-1])
    assert "PRIVATE" not in out and body not in out


def test_concurrent_first_use_yields_one_key(key_dir):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: signing.public_key_hex(), range(16)))
    assert len(keys) == 1
    assert [p.name for p in key_dir.iterdir()] == ["signing_key.pem"]
