"""Crash-safe file writes: a reader sees the old file or the new one, never half of either.

The data goes to a temporary file in the target's own directory (so :func:`os.replace` is a rename
on one filesystem), is fsynced, renamed over the target, and then the directory entry is fsynced.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from typing import Any, Mapping

from nanochat_core.atomic import fsync_dir  # one implementation for both packages


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, mode: int = 0o644) -> Path:
    """Write ``data`` (str is UTF-8 encoded) to ``path`` atomically; returns the path.

    ``mode`` is applied to the temporary file before any byte is written, so a private file
    (``mode=0o600``) is never readable by others, not even for a moment.
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    directory = target.parent if str(target.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)
    return target


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN/inf float replaced by None, through dicts, lists and tuples (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Serialize ``obj`` as JSON (trailing newline) and write it atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return write_atomic(path, text)
