"""Security: the signing key never leaves its 0600 file. After a real (tiny) run, no file of the run
directory — bundle, logs, progress, artifacts, state — and nothing the run printed contains the private
key in any usual encoding (PEM, its base64 body, raw bytes, hex, base64 of the raw bytes)."""

from __future__ import annotations

import base64
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from reliability_helpers import files_under

pytestmark = pytest.mark.slow  # shares the reference run (about a minute on 2 cores)


def _secret_forms(pem: bytes) -> dict[str, bytes]:
    key = serialization.load_pem_private_key(pem, password=None)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    return {
        "pem": pem.strip(),
        "pem body": body,
        "raw": raw,
        "raw hex": raw.hex().encode(),
        "raw HEX": raw.hex().upper().encode(),
        "raw base64": base64.b64encode(raw).rstrip(b"="),
        "der": der,
        "der hex": der.hex().encode(),
    }


def test_private_key_is_0600_and_appears_nowhere_in_the_run(reference_run):
    key_dir = reference_run.root / "keys"
    key_file = key_dir / "signing_key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) & 0o077 == 0
    assert sorted(p.name for p in key_dir.iterdir()) == ["signing_key.pem"]  # no temp copies left
    forms = _secret_forms(key_file.read_bytes())
    scanned = files_under(reference_run.run_dir)
    assert len(scanned) > 20  # bundle, logs, progress, phases, artifacts, state, launch record
    for path in scanned:
        data = path.read_bytes()
        for name, secret in forms.items():
            assert secret not in data, f"private key ({name}) found in {path.relative_to(reference_run.run_dir)}"
    printed = (reference_run.proc.stdout + reference_run.proc.stderr).encode()
    assert printed.strip()
    for name, secret in forms.items():
        assert secret not in printed, f"private key ({name}) printed by nanobench run"
    assert b"PRIVATE KEY" not in printed
    public_hex = (reference_run.run_dir / "manifest.sig").read_text()
    assert "public_key" in public_hex  # the public half is what the bundle carries
