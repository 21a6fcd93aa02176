"""Reading untrusted bundle files safely: regular files only, never through a link, never unbounded.

Everything ``verify``, ``submit`` and ``leaderboard build`` read from a bundle goes through here.
:func:`read_bytes` opens with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink fails, a FIFO cannot block the
reader), checks with ``fstat`` that the opened thing is a regular file, and refuses files larger
than the cap instead of reading them. :func:`load_json` also rejects duplicate object keys (a
manifest that lists a file twice), non-finite numbers (``1e400``, ``NaN``) and lone surrogates.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

DEFAULT_CAP = 16 * 2**20  # 16 MiB: larger than any file a real bundle's JSON/CSV/log needs
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class UnsafeFile(ValueError):
    """A bundle file is missing, not a regular file, a link, too large or not valid content."""


def show(name: Any) -> str:
    """An untrusted name for a message: ``repr`` with every non-ASCII character escaped."""
    return ascii(name) if isinstance(name, (str, int, float, bool, type(None))) else ascii(str(name))


def is_regular(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` itself (not what a link points to) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_bytes(path: str | os.PathLike[str], cap: int = DEFAULT_CAP) -> bytes:
    """The bytes of a regular file no larger than ``cap``; :class:`UnsafeFile` otherwise (never blocks)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except FileNotFoundError:
        raise UnsafeFile(f"{show(p.name)} is missing") from None
    except OSError as exc:  # ELOOP: a symlink; others: permissions, a bad name
        raise UnsafeFile(f"{show(p.name)} cannot be opened as a regular file ({exc.strerror or exc})") from None
    except ValueError as exc:  # an embedded NUL in the name
        raise UnsafeFile(f"{show(p.name)}: {exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{show(p.name)} is not a regular file")
        if info.st_size > cap:
            raise UnsafeFile(f"{show(p.name)} is {info.st_size} bytes, over the {cap}-byte limit")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > cap:
                raise UnsafeFile(f"{show(p.name)} grew past the {cap}-byte limit while being read")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], cap: int = DEFAULT_CAP) -> str:
    """UTF-8 text of a regular file (invalid bytes replaced); :class:`UnsafeFile` as for :func:`read_bytes`."""
    return read_bytes(path, cap).decode("utf-8", errors="replace")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise UnsafeFile(f"duplicate key {show(key)}")
        out[key] = value
    return out


def is_finite_number(value: Any) -> bool:
    """A JSON number that is a real, finite number (not a bool, not NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnsafeFile(f"number {text[:40]!r} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 40:
        raise UnsafeFile(f"integer {text[:20]}... has more than 40 digits")
    return int(text)


def _reject_constant(text: str) -> Any:
    raise UnsafeFile(f"{text} is not a JSON number")


def _has_lone_surrogate(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if depth > 200:
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k, depth + 1) or _has_lone_surrogate(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v, depth + 1) for v in value)
    return False


def parse_json(data: bytes | str, what: str = "JSON") -> Any:
    """Strict JSON: no duplicate keys, no NaN/Infinity/overflowing numbers, no lone surrogates."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_reject_constant)
    except UnsafeFile as exc:
        raise UnsafeFile(f"{what}: {exc}") from None
    except RecursionError:
        raise UnsafeFile(f"{what} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnsafeFile(f"{what} is not valid JSON: {exc}") from None
    if _has_lone_surrogate(value):
        raise UnsafeFile(f"{what} holds text that is not valid Unicode (a lone surrogate)")
    return value


def load_json(path: str | os.PathLike[str], cap: int = DEFAULT_CAP) -> Any:
    """:func:`parse_json` of a file read with :func:`read_bytes`."""
    return parse_json(read_bytes(path, cap), Path(path).name)
