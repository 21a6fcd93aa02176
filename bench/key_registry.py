"""Who signed a bundle: the key registry kept in the repository (``submissions/keys/<owner>.pub``).

Each ``<owner>.pub`` file is a tiny TOML document::

    name = "nanobench developers"                # shown on every leaderboard row this key signed
    public_key = "c3216dc2...08ae"               # the raw Ed25519 public key, 64 hex digits
    added = "2026-11-29"                         # optional: when it was registered
    note = "..."                                 # optional

``<owner>`` (the file stem: letters, digits, ``. _ -``) identifies the signer; adding a key is a
reviewed pull request, which is what makes a name on the board mean something. ``--trusted-keys``
(``submit``, ``leaderboard build``, ``verify``) takes such a directory, one ``.pub`` file, or a
plain list of hex keys / ``SHA256:`` fingerprints (one per line, ``#`` comments).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from bench import signing
from bench.safe_read import UnsafeFile, is_regular, read_text, show

DEFAULT_DIR = Path("submissions") / "keys"
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME_CHARS = 120


class KeyRegistryError(ValueError):
    """A key file or list cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Signer:
    owner: str
    name: str
    public_key: str
    fingerprint: str


@dataclass
class KeyRegistry:
    """Trusted signers by public key (lower-case hex) and by fingerprint."""

    signers: dict[str, Signer]
    source: str = ""

    def lookup(self, public_key: str | None, fingerprint: str | None = None) -> Signer | None:
        if isinstance(public_key, str) and public_key.lower() in self.signers:
            return self.signers[public_key.lower()]
        if isinstance(fingerprint, str):
            for signer in self.signers.values():
                if signer.fingerprint.lower() == fingerprint.lower():
                    return signer
        return None

    def __len__(self) -> int:
        return len(self.signers)


def _signer_from_pub(path: Path) -> Signer:
    owner = path.stem
    if not _OWNER.match(owner):
        raise KeyRegistryError(f"{show(path.name)}: the owner name (file stem) must be letters, digits, '.', '_', '-'")
    try:
        data = tomllib.loads(read_text(path, cap=64 * 1024))
    except (UnsafeFile, tomllib.TOMLDecodeError) as exc:
        raise KeyRegistryError(f"{show(str(path))}: {exc}") from None
    public, name = data.get("public_key"), data.get("name")
    if not isinstance(public, str) or not _HEX_KEY.match(public.strip().lower()):
        raise KeyRegistryError(f"{show(str(path))}: public_key must be 64 hex digits (a raw Ed25519 public key)")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise KeyRegistryError(f"{show(str(path))}: name must be text of 1 to {MAX_NAME_CHARS} characters")
    public = public.strip().lower()
    return Signer(owner, name.strip(), public, signing.fingerprint_of(public))


def _signers_from_list(path: Path) -> list[Signer]:
    """A plain list: hex keys or SHA256 fingerprints, one per line; owners are unnamed."""
    try:
        text = read_text(path, cap=1024 * 1024)
    except UnsafeFile as exc:
        raise KeyRegistryError(str(exc)) from None
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        if _HEX_KEY.match(item.lower()):
            out.append(Signer(f"key-{n}", f"listed key {signing.fingerprint_of(item.lower())}", item.lower(), signing.fingerprint_of(item.lower())))
        elif item.startswith("SHA256:"):
            out.append(Signer(f"key-{n}", f"listed key {item}", "", item))
        else:
            raise KeyRegistryError(f"{show(str(path))} line {n}: not a 64-hex-digit public key or SHA256: fingerprint")
    return out


def load_registry(source: str | os.PathLike[str] | None = None) -> KeyRegistry:
    """Read a registry directory, one ``.pub`` file, or a key list; ``None`` means ``submissions/keys``.

    A missing default directory is an empty registry; any other unreadable source raises
    :class:`KeyRegistryError`.
    """
    path = Path(source) if source is not None else DEFAULT_DIR
    signers: list[Signer] = []
    if path.is_dir() and not path.is_symlink():
        for pub in sorted(path.iterdir()):
            if pub.suffix == ".pub" and not pub.name.startswith("."):
                if not is_regular(pub):
                    raise KeyRegistryError(f"{show(str(pub))} is not a regular file")
                signers.append(_signer_from_pub(pub))
    elif path.exists() or path.is_symlink():
        signers = [_signer_from_pub(path)] if path.suffix == ".pub" else _signers_from_list(path)
    elif source is not None:
        raise KeyRegistryError(f"trusted keys {show(str(path))}: no such file or directory")
    by_key: dict[str, Signer] = {}
    for s in signers:
        by_key[s.public_key or s.fingerprint.lower()] = s
    return KeyRegistry(by_key, str(path))
