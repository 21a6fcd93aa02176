"""Files that nanochat ORIG reads from outside the Hugging Face hub, fetched for the download presets.

- ``identity_conversations.jsonl``: ORIG's 1,000 synthetic identity conversations (its speedrun fetches
  it from the public S3 bucket). No hash is published and the file is not in a git repository, so it is
  pinned trust-on-first-use: the first download records its sha256 in ``task_data/manifest.json`` and
  every later use enforces it (a corrupt copy is fetched again).
- ``words_alpha.txt``: the 370K-word list of dwyl/english-words that ORIG's SpellingBee and
  SimpleSpelling draw from. ORIG reads the ``master`` branch; we read the file at the last commit that
  changed it in our snapshot of that repository and check its git blob id (a content hash known from
  the repository's tree) before using it.
- ``spellingbee.py``: ORIG's task file at the reference commit, pinned by sha256. Its question templates
  and answer text are read out of it at run time (:mod:`nanochat_core.tasks.spelling_text`), so nanobench
  matches ORIG's SpellingBee without shipping ORIG's prose.

Downloads are resumable, retried and locked (:mod:`nanochat_core.download`). Each URL can be replaced by
a mirror through an environment variable, read at call time.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from nanochat_core.download import DownloadError, Manifest, download_file, ensure

ORIG_COMMIT = "c75fe54aa7c1fa881701c246f9427bcbe4eee5a4"
WORDS_COMMIT = "8179fe68775df3f553ef19520db065228e65d1d3"  # dwyl/english-words, 2025-01-05, last change to words_alpha.txt
UPSTREAM_DIR = "upstream"


@dataclass(frozen=True)
class UpstreamFile:
    """A file fetched from a fixed URL and checked by sha256, git blob id or, lacking both, first use."""

    filename: str
    url: str
    url_env: str  # environment variable that replaces `url` (a mirror)
    sha256: str | None = None
    git_blob: str | None = None  # sha1 of "blob <size>\0<bytes>", as git names file contents
    what: str = ""

    def resolved_url(self) -> str:
        return os.environ.get(self.url_env) or self.url


IDENTITY = UpstreamFile(
    "identity_conversations.jsonl",
    "https://karpathy-public.s3.us-west-2.amazonaws.com/identity_conversations.jsonl",
    "NANOBENCH_IDENTITY_URL",
    what="nanochat's identity conversations (sha256 pinned on first download)",
)
WORDS_ALPHA = UpstreamFile(
    "words_alpha.txt",
    f"https://raw.githubusercontent.com/dwyl/english-words/{WORDS_COMMIT}/words_alpha.txt",
    "NANOBENCH_WORDS_ALPHA_URL",
    git_blob="d3a119e7ce57d068c3f3c9cbd694fc2ff14571ab",
    what=f"dwyl/english-words words_alpha.txt @ {WORDS_COMMIT[:7]}",
)
SPELLINGBEE_SOURCE = UpstreamFile(
    "nanochat_spellingbee.py",
    f"https://raw.githubusercontent.com/karpathy/nanochat/{ORIG_COMMIT}/tasks/spellingbee.py",
    "NANOBENCH_SPELLINGBEE_SOURCE_URL",
    sha256="50a80f8a9a8a696df054d850fde3e3c1f08f4336ce7d0a2f1a0ec218a59123b0",
    git_blob=None,
    what=f"nanochat tasks/spellingbee.py @ {ORIG_COMMIT[:7]}",
)
UPSTREAM_FILES = {f.filename: f for f in (IDENTITY, WORDS_ALPHA, SPELLINGBEE_SOURCE)}


def git_blob_id(path: str | os.PathLike[str]) -> str:
    """The git blob id (sha1 of ``"blob <size>\\0"`` + bytes) of a file."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()  # noqa: S324 (git's content id)


def upstream_path(cache_dir: str | os.PathLike[str], spec: UpstreamFile) -> Path:
    return Path(cache_dir) / "task_data" / UPSTREAM_DIR / spec.filename


def ensure_upstream(
    spec: UpstreamFile,
    cache_dir: str | os.PathLike[str] | None,
    *,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60,
) -> Path:
    """The local copy of `spec` under ``cache_dir/task_data/upstream/``, downloaded and checked if needed."""
    if cache_dir is None:
        raise ValueError(f"downloading {spec.filename} needs a cache_dir")
    dest = upstream_path(cache_dir, spec)
    url = spec.resolved_url()
    kwargs = {"retries": retries, "backoff": backoff, "timeout": timeout}
    if spec.sha256 is not None:
        download_file(url, dest, sha256=spec.sha256, **kwargs)
    elif spec.git_blob is not None:
        for attempt in range(2):
            download_file(url, dest, **kwargs)
            got = git_blob_id(dest)
            if got == spec.git_blob:
                break
            dest.unlink()
            if attempt == 1:
                raise DownloadError(
                    f"{url}: content does not match the pinned git blob {spec.git_blob} (got {got}, fetched twice)"
                )
    else:
        manifest = Manifest(Path(cache_dir) / "task_data" / "manifest.json")
        ensure(url, dest, manifest, key=f"{UPSTREAM_DIR}/{spec.filename}", **kwargs)
    return dest


def prefetch_upstream(cache_dir: str | os.PathLike[str], **download_kwargs) -> list[Path]:
    """Download every upstream file (a no-op for what is already cached and intact)."""
    return [ensure_upstream(spec, cache_dir, **download_kwargs) for spec in UPSTREAM_FILES.values()]
