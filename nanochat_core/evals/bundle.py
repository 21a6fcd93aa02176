"""The CORE eval bundle (spec section 7): download once, verify, unzip safely, reuse.

`ensure_eval_bundle(cache_dir)` fetches `eval_bundle.zip` into `cache_dir` (resumable, under a
file lock, sha256 recorded in `cache_dir/manifest.json` on first download and enforced after),
extracts it into `cache_dir/eval_bundle/` (members with absolute paths, `..` components or
symlinks are rejected) and returns that directory, which holds `core.yaml`,
`eval_data/**/*.jsonl` and `eval_meta_data.csv`.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from filelock import FileLock

from nanochat_core.download import DownloadError, Manifest, ensure, fsync_dir

EVAL_BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
EVAL_BUNDLE_URL_ENV = "NANOBENCH_EVAL_BUNDLE_URL"
ZIP_NAME = "eval_bundle.zip"
BUNDLE_DIRNAME = "eval_bundle"
COMPLETE_MARKER = ".complete"  # holds the sha256 of the zip the directory was extracted from
REQUIRED_FILES = ("core.yaml",)


class UnsafeArchiveError(DownloadError):
    """A zip member would land outside the extraction directory (zip-slip) or is a link."""


def eval_bundle_url() -> str:
    """The bundle URL: `$NANOBENCH_EVAL_BUNDLE_URL` if set (read now), else the public S3 URL."""
    return os.environ.get(EVAL_BUNDLE_URL_ENV) or EVAL_BUNDLE_URL


def _member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """Validated path components of one zip member."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise UnsafeArchiveError(f"zip member has an absolute path: {info.filename!r}")
    if any(part == ".." for part in path.parts):
        raise UnsafeArchiveError(f"zip member escapes the target directory: {info.filename!r}")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"zip member is a symbolic link: {info.filename!r}")
    return tuple(part for part in path.parts if part not in ("", "."))


def safe_extract(zip_path: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Extract every member under `target`; validate all members before writing any.

    When all members share one top-level directory (the bundle's `eval_bundle/`), that level is
    dropped so `target` itself holds `core.yaml`.
    """
    target = Path(target)
    with zipfile.ZipFile(zip_path) as archive:
        members = [(info, _member_parts(info)) for info in archive.infolist()]
        members = [(info, parts) for info, parts in members if parts]
        tops = {parts[0] for _, parts in members}
        strip = len(tops) == 1 and all(len(p) > 1 or info.is_dir() for info, p in members)
        root = target.resolve()
        for info, parts in members:
            rel = parts[1:] if strip else parts
            if not rel:
                continue
            out = target.joinpath(*rel)
            if root not in out.resolve().parents and out.resolve() != root:
                raise UnsafeArchiveError(f"zip member escapes the target directory: {info.filename!r}")
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def _bundle_is_complete(bundle_dir: Path, zip_sha256: str | None) -> bool:
    marker = bundle_dir / COMPLETE_MARKER
    if not marker.is_file():
        return False
    return zip_sha256 is None or marker.read_text(encoding="utf-8").strip() == zip_sha256


def ensure_eval_bundle(
    cache_dir: str | os.PathLike[str],
    *,
    url: str | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60,
) -> Path:
    """Return `cache_dir/eval_bundle/`, downloading and extracting the bundle first if needed."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    bundle_dir = cache_dir / BUNDLE_DIRNAME
    manifest = Manifest(cache_dir / "manifest.json")
    with FileLock(str(cache_dir / (BUNDLE_DIRNAME + ".lock"))):
        entry = manifest.get(ZIP_NAME)
        if entry and _bundle_is_complete(bundle_dir, entry["sha256"]):
            return bundle_dir
        zip_sha = ensure(
            url or eval_bundle_url(),
            cache_dir / ZIP_NAME,
            manifest,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
        )
        staging = Path(tempfile.mkdtemp(prefix=".eval_bundle.", dir=cache_dir))
        try:
            safe_extract(cache_dir / ZIP_NAME, staging)
            missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
            if missing:
                raise DownloadError(f"eval bundle from {url or eval_bundle_url()} lacks {missing}")
            (staging / COMPLETE_MARKER).write_text(zip_sha + "\n", encoding="utf-8")
            if bundle_dir.exists():
                shutil.rmtree(bundle_dir)
            os.replace(staging, bundle_dir)
            fsync_dir(cache_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return bundle_dir
