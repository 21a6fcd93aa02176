"""SHA-256 of bytes, files and directory trees (the code, data and artifact hashes of a run)."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's contents, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    """True when a glob matches the whole relative path, one of its leading directories, or one component."""
    parts = rel.split("/")
    candidates = {rel, *parts, *("/".join(parts[:i]) for i in range(1, len(parts)))}
    return any(fnmatch.fnmatchcase(c, pat) for pat in patterns for c in candidates)


def iter_tree(
    root: str | os.PathLike[str],
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> Iterator[str]:
    """Relative POSIX paths of the regular files under ``root``, sorted.

    ``include``/``exclude`` are glob patterns matched against the relative path (``*`` crosses
    ``/``) or any single path component (so ``__pycache__`` excludes every such directory).
    With no ``include`` every file is included. Symlinked directories are not followed.
    """
    root_path = Path(root)
    inc = list(include) if include is not None else None
    exc = list(exclude or ())
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root_path):
        rel_dir = Path(dirpath).relative_to(root_path).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if not _matches(rel_dir + d, exc)]
        for name in filenames:
            rel = rel_dir + name
            if not os.path.isfile(os.path.join(dirpath, name)):
                continue
            if exc and _matches(rel, exc):
                continue
            if inc is not None and not any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in inc):
                continue
            found.append(rel)
    yield from sorted(found)


def tree_digests(
    root: str | os.PathLike[str],
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, str]:
    """``{relative path: sha256}`` for the files :func:`iter_tree` selects."""
    root_path = Path(root)
    return {rel: sha256_file(root_path / rel) for rel in iter_tree(root_path, include, exclude)}


def hash_tree(
    root: str | os.PathLike[str],
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> str:
    """One stable hex SHA-256 over the selected files: sorted relative paths and their contents.

    Independent of file timestamps, permissions, walk order and the absolute location of ``root``.
    Renaming, adding, removing or editing any selected file changes it.
    """
    digest = hashlib.sha256(b"nanobench-tree-v1\n")
    for rel, file_hash in tree_digests(root, include, exclude).items():
        digest.update(rel.encode("utf-8") + b"\0" + file_hash.encode("ascii") + b"\n")
    return digest.hexdigest()
