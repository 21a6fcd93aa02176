"""Robust HTTP downloads: resume, retry with backoff, sha256 verification, file locks, a manifest.

`download_file` makes `dest` hold the bytes at `url`. It streams into `dest + ".part"`, resumes
a partial `.part` with an HTTP Range request, retries transient failures (connection errors,
5xx, 429, bodies shorter than their Content-Length) with exponential backoff, verifies the
sha256 when one is given, fsyncs and renames atomically. A `filelock.FileLock(dest + ".lock")`
serialises concurrent callers (threads or processes): the second waits and then finds the
file done.

`Manifest` + `ensure` add trust-on-first-use hashing: the first download of a file records its
sha256; every later `ensure` checks the file on disk against it and re-fetches a corrupt copy.

Only the standard library (`urllib.request`) and `filelock` are used. Base URLs are arguments;
nothing is read from the environment at import time.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

from filelock import FileLock

from nanochat_core.atomic import atomic_write_bytes, fsync_dir  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, Optional[int]], None]  # (bytes on disk so far, total bytes or None)

CHUNK_BYTES = 1 << 20
MAX_BACKOFF_S = 60.0
USER_AGENT = "nanobench-downloader/1"


class DownloadError(RuntimeError):
    """A download that cannot succeed (404, hash mismatch, retries exhausted, ...)."""


class _TransientError(Exception):
    """A failure worth retrying (dropped connection, 5xx, truncated body)."""


class _RestartError(_TransientError):
    """The partial file cannot be resumed and must be discarded before the next attempt."""


class _AlreadyComplete(Exception):
    """The server says the partial file already holds every byte (416 with a matching size)."""


def default_hf_endpoint() -> str:
    """The Hugging Face endpoint, read from `HF_ENDPOINT` at call time."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# One HTTP attempt
# --------------------------------------------------------------------------------------------


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) only, checked)
    except urllib.error.HTTPError as err:
        total = _content_range_total(err.headers.get("Content-Range")) if err.headers else None
        err.close()
        if err.code == 416 and offset > 0:
            if total == offset:
                raise _AlreadyComplete() from err
            raise _RestartError(f"HTTP 416 for range starting at {offset}") from err
        if err.code >= 500 or err.code in (408, 429):
            raise _TransientError(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(f"GET {url} failed: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, socket.gaierror):  # the host name does not resolve: no network or a wrong host
            host = urllib.parse.urlsplit(url).hostname
            raise DownloadError(f"GET {url} failed: cannot resolve host {host} ({reason.strerror or reason}); "
                                "no network or DNS? (not retried)") from None
        raise _TransientError(f"cannot connect: {err}") from err


def _content_range_start(value: str | None) -> int | None:
    """Start byte of a `Content-Range: bytes START-END/TOTAL` header."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _content_range_total(value: str | None) -> int | None:
    """TOTAL of a `Content-Range: bytes .../TOTAL` header."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _fetch_once(url: str, part: str, timeout: float, progress: ProgressFn | None) -> None:
    """One GET into `part`, resuming from its current size. Raises on any shortfall."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    try:
        response = _open(url, offset, timeout)
    except _AlreadyComplete:
        return
    with response:
        status = response.status
        if status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                raise _RestartError(f"server resumed at {start}, expected {offset}")
            mode = "ab"
        elif status == 200:
            if offset:
                log.info("%s: server ignored the Range request, restarting from byte 0", url)
            offset, mode = 0, "wb"
        else:
            raise _TransientError(f"unexpected HTTP {status}")
        length_header = response.headers.get("Content-Length")
        body_len = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + body_len if body_len is not None else None
        received = 0
        with open(part, mode) as fh:
            try:
                while chunk := response.read(CHUNK_BYTES):
                    fh.write(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(offset + received, total)
            except (OSError, http.client.HTTPException) as err:
                raise _TransientError(f"connection lost after {offset + received} bytes: {err}") from err
            finally:
                fh.flush()
                os.fsync(fh.fileno())
        if body_len is not None and received != body_len:
            raise _TransientError(f"truncated body: got {received} of {body_len} bytes")


# --------------------------------------------------------------------------------------------
# download_file
# --------------------------------------------------------------------------------------------


def _fetch_with_retries(
    url: str,
    part: str,
    *,
    expected_size: int | None,
    retries: int,
    backoff: float,
    timeout: float,
    progress: ProgressFn | None,
) -> None:
    last: Exception | None = None
    for attempt in range(max(1, retries)):
        if attempt:
            delay = min(MAX_BACKOFF_S, backoff * (2 ** (attempt - 1)))
            log.warning("%s: attempt %d/%d failed (%s); retrying in %.2fs", url, attempt, retries, last, delay)
            time.sleep(delay)
        try:
            _fetch_once(url, part, timeout, progress)
        except _RestartError as err:
            last = err
            _remove(part)
            continue
        except _TransientError as err:
            last = err
            continue
        size = os.path.getsize(part)
        if expected_size is None or size == expected_size:
            return
        last = _TransientError(f"size {size} bytes, expected {expected_size}")
        if size > expected_size:
            _remove(part)
    raise DownloadError(f"GET {url} failed after {max(1, retries)} attempts: {last}")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _download_locked(
    url: str,
    dest: str,
    *,
    sha256: str | None,
    expected_size: int | None,
    retries: int,
    backoff: float,
    timeout: float,
    progress: ProgressFn | None,
) -> str:
    """Fetch `url` into `dest` (caller holds the lock). Returns the sha256 of the final file."""
    part = dest + ".part"
    for round_ in range(2):
        _fetch_with_retries(
            url, part, expected_size=expected_size, retries=retries, backoff=backoff, timeout=timeout, progress=progress
        )
        got = sha256_file(part)
        if sha256 is None or got == sha256.lower():
            os.replace(part, dest)
            fsync_dir(os.path.dirname(dest) or ".")
            return got
        _remove(part)
        if round_ == 0:
            log.warning("%s: sha256 mismatch (expected %s, got %s); fetching again from scratch", url, sha256, got)
    raise DownloadError(f"sha256 mismatch for {url}: expected {sha256.lower()}, got {got} (fetched twice)")


def _check_url(url: str) -> None:
    if not url.lower().startswith(("http://", "https://")):
        raise DownloadError(f"only http(s) URLs can be downloaded, got {url!r}")


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    expected_size: int | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60,
    progress: ProgressFn | None = None,
) -> str:
    """Download `url` to `dest` and return the sha256 hex of the final file.

    If `dest` already exists and matches `sha256` (or no hash is given), nothing is fetched; a
    mismatching `dest` is replaced. Attempt k (k >= 1) waits `backoff * 2**(k-1)` seconds first.
    """
    _check_url(url)
    dest = os.fspath(dest)
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    with FileLock(dest + ".lock"):
        if os.path.exists(dest):
            got = sha256_file(dest)
            if sha256 is None or got == sha256.lower():
                return got
            log.warning("%s: existing file has sha256 %s, expected %s; replacing it", dest, got, sha256)
            _remove(dest)
        return _download_locked(
            url,
            dest,
            sha256=sha256,
            expected_size=expected_size,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            progress=progress,
        )


# --------------------------------------------------------------------------------------------
# Manifest + ensure (trust on first use)
# --------------------------------------------------------------------------------------------


class Manifest:
    """A JSON file `{filename: {"sha256", "size", "url"}}`, re-read and atomically rewritten per update.

    Updates take a file lock (`path + ".lock"`), so threads and processes can share one manifest.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._thread_lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as err:
            raise DownloadError(f"manifest {self.path} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise DownloadError(f"manifest {self.path} must hold a JSON object")
        return data

    def entries(self) -> dict[str, dict[str, Any]]:
        """A snapshot of every entry."""
        return self._read()

    def get(self, name: str) -> dict[str, Any] | None:
        """The entry for `name`, or None."""
        return self._read().get(name)

    def record(self, name: str, *, sha256: str, size: int, url: str) -> None:
        """Add or replace the entry for `name`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, FileLock(str(self.path) + ".lock"):
            data = self._read()
            data[name] = {"sha256": sha256, "size": int(size), "url": url}
            payload = json.dumps(data, indent=2, sort_keys=True) + "\n"
            atomic_write_bytes(self.path, payload.encode("utf-8"))


def ensure(
    url: str,
    dest: str | os.PathLike[str],
    manifest: Manifest,
    *,
    key: str | None = None,
    expected_size: int | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60,
    progress: ProgressFn | None = None,
) -> str:
    """Make `dest` hold `url`'s bytes, enforcing the manifest's sha256; returns that sha256.

    With no manifest entry (key defaults to the file name) the file is downloaded if missing and
    its hash recorded (trust on first use). With an entry, an existing file is hashed; a mismatch
    is logged as corruption, the file deleted and re-fetched, and a re-fetch that still does not
    match raises :class:`DownloadError`.
    """
    _check_url(url)
    dest = os.fspath(dest)
    key = key or os.path.basename(dest)
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    with FileLock(dest + ".lock"):
        entry = manifest.get(key)
        expected = entry["sha256"].lower() if entry else None
        if expected is not None and expected_size is None:
            expected_size = entry.get("size")
        if os.path.exists(dest):
            got = sha256_file(dest)
            if expected is None:
                manifest.record(key, sha256=got, size=os.path.getsize(dest), url=url)
                return got
            if got == expected:
                return got
            log.warning("%s is corrupt (sha256 %s, manifest says %s); re-fetching", dest, got, expected)
            _remove(dest)
        got = _download_locked(
            url,
            dest,
            sha256=expected,
            expected_size=expected_size,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            progress=progress,
        )
        if expected is None:
            manifest.record(key, sha256=got, size=os.path.getsize(dest), url=url)
        return got
