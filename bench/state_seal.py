"""Sealing the run state: a tampered ``state.json`` cannot be resumed into a signed bundle.

Each phase record (and the record of the phase that is running) is sealed with an HMAC-SHA256
keyed by a secret derived from the user's signing key (:func:`state_secret`), over the record's
canonical JSON, its label and the run's nonce. The nonce (:func:`new_nonce`, 128 random bits) is
made when a run starts, kept in state.json and written into result.json as ``run_nonce``; the
leaderboard refuses two submissions with one nonce, so a copied run directory resumed into a
second bundle is one measurement, not two. Only the holder of the signing key can make a seal,
and a seal made for one run (nonce) does not fit another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization

from bench import signing
from bench.atomic import finite_json

_CONTEXT = b"nanobench run-state seal v1"


class StateTampered(ValueError):
    """state.json does not match its seals (edited, copied from another run, or made without the key)."""


def new_nonce() -> str:
    return secrets.token_hex(16)


def state_secret(key_dir: str | os.PathLike[str] | None = None) -> bytes:
    """A 32-byte secret derived from this user's Ed25519 signing key (the key itself never leaves it)."""
    key = signing.load_or_create_key(key_dir)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return hmac.new(raw, _CONTEXT, hashlib.sha256).digest()




def seal(secret: bytes, nonce: str, label: str, record: Any) -> str:
    """Hex HMAC of ``record`` (canonical JSON) bound to the run's nonce and the record's label."""
    body = json.dumps(finite_json(record), sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    message = b"\0".join([nonce.encode(), label.encode(), body.encode()])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def seals_for(secret: bytes, nonce: str, phases: dict[str, Any], running: Any) -> dict[str, str]:
    out = {f"phase:{name}": seal(secret, nonce, f"phase:{name}", rec) for name, rec in phases.items()}
    if running is not None:
        out["running"] = seal(secret, nonce, "running", running)
    return out


def check_seals(secret: bytes, nonce: Any, phases: Any, running: Any, seals: Any) -> None:
    """Raise :class:`StateTampered` naming the first record whose seal does not match."""
    if not phases and running is None:
        return  # nothing recorded yet
    if not isinstance(nonce, str) or not nonce:
        raise StateTampered("state.json has no run nonce (edited, or written by a nanobench without sealed state)")
    if not isinstance(phases, dict) or not isinstance(seals, dict):
        raise StateTampered("state.json has no seals for its phase records")
    expected = seals_for(secret, nonce, phases, running)
    for label, mac in expected.items():
        got = seals.get(label)
        if not isinstance(got, str) or not hmac.compare_digest(got, mac):
            what = "the running-phase record" if label == "running" else f"the record of phase {label.split(':', 1)[1]!r}"
            raise StateTampered(
                f"state.json: {what} does not match its seal (edited after the phase ended, copied from another run, "
                "or sealed with another signing key); refusing to resume. Start a new run."
            )
