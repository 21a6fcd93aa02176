"""Finalize a run directory into a signed bundle: ``manifest.json`` + ``manifest.sig``.

``manifest.json`` lists the SHA-256 and size of every regular file in the run directory except
``artifacts/`` (tokenizer and checkpoints: their hashes live in result.json), ``manifest.json`` and
``manifest.sig`` (and a top-level ``submission.json``, the unsigned metadata `nanobench submit`
writes next to a submitted bundle). ``manifest.sig`` is a small JSON object holding an Ed25519 signature over the
exact bytes of ``manifest.json`` plus the public key and its fingerprint, so anyone can check the
bundle offline with :mod:`bench.verify`.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import signing
from bench.atomic import write_atomic
from bench.hashing import sha256_file

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
EXCLUDED_DIRS = ("artifacts",)
SUBMISSION_META = "submission.json"  # unsigned label/availability/notes that `nanobench submit` adds
EXCLUDED_FILES = (MANIFEST, SIGNATURE, SUBMISSION_META)
MANIFEST_VERSION = 1


class BundleError(Exception):
    """The run directory cannot be bundled (a symlink or special file where only files may be)."""


@dataclass(frozen=True)
class BundleInfo:
    manifest_path: Path
    signature_path: Path
    files: int
    public_key: str
    key_fingerprint: str


def bundle_files(run_dir: str | os.PathLike[str]) -> list[str]:
    """Sorted relative POSIX paths of the files a manifest must cover.

    Raises :class:`BundleError` on a symlink or a non-regular file outside ``artifacts/``: a
    manifest entry must name bytes inside the bundle, nothing that points elsewhere.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise BundleError(f"{root} is not a directory")
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        top = rel_dir == "."
        kept = []
        for d in sorted(dirnames):
            if top and d in EXCLUDED_DIRS:
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                raise BundleError(f"symlinked directory in bundle: {_join(rel_dir, d)}")
            kept.append(d)
        dirnames[:] = kept
        for name in filenames:
            rel = _join(rel_dir, name)
            if top and name in EXCLUDED_FILES:
                continue
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            if not stat.S_ISREG(mode):
                raise BundleError(f"not a regular file (symlink or special): {rel}")
            found.append(rel)
    return sorted(found)


def _join(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else f"{rel_dir}/{name}"


def build_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"manifest_version", "hash", "files": {path: {"sha256", "size"}}}`` for the run directory."""
    root = Path(run_dir)
    files = {}
    for rel in bundle_files(root):
        path = root / rel
        files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return {"manifest_version": MANIFEST_VERSION, "hash": "sha256", "files": files}


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The canonical serialization: sorted keys, 1-space indent, UTF-8, trailing newline."""
    return (json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def signature_record(data: bytes, key_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The ``manifest.sig`` object for ``data`` signed with this user's key."""
    key = signing.load_or_create_key(key_dir)
    public = signing.public_key_hex_of(key)
    return {
        "algorithm": signing.ALGORITHM,
        "public_key": public,
        "signature": key.sign(data).hex(),
        "key_fingerprint": signing.fingerprint_of(public),
        "signed_file": MANIFEST,
    }


def write_bundle(run_dir: str | os.PathLike[str], key_dir: str | os.PathLike[str] | None = None) -> BundleInfo:
    """Hash the run directory, write ``manifest.json`` and sign it into ``manifest.sig``.

    Call it last: any later change to a covered file makes :func:`bench.verify.verify_bundle` fail.
    Rerunning it re-hashes and re-signs (any old manifest/signature is replaced).
    """
    root = Path(run_dir)
    manifest = build_manifest(root)
    data = manifest_bytes(manifest)
    sig = signature_record(data, key_dir)
    manifest_path = write_atomic(root / MANIFEST, data)
    signature_path = write_atomic(root / SIGNATURE, json.dumps(sig, indent=1, sort_keys=True) + "\n")
    return BundleInfo(manifest_path, signature_path, len(manifest["files"]), sig["public_key"], sig["key_fingerprint"])
