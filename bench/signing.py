"""Ed25519 signing key of this user: created on first use, stored 0600, never printed or logged.

Where the key lives (decided at call time, first match wins): the ``key_dir`` argument, the
``NANOBENCH_KEY_DIR`` environment variable, ``$XDG_CONFIG_HOME/nanobench``, ``~/.config/nanobench``.
The file is ``signing_key.pem`` (unencrypted PKCS#8). It is written to a temporary file opened with
mode 0600 and then hard-linked into place, so it is never readable by others, never seen half
written, and two processes creating it at once end up sharing one key.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILENAME = "signing_key.pem"
KEY_DIR_ENV = "NANOBENCH_KEY_DIR"
ALGORITHM = "ed25519"


class SigningKeyError(Exception):
    """The key file exists but cannot be used (bad permissions, not an Ed25519 key)."""


def resolve_key_dir(key_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding the signing key (see the module docstring for the order)."""
    if key_dir is not None:
        return Path(key_dir)
    env = os.environ.get(KEY_DIR_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "nanobench"


def key_path(key_dir: str | os.PathLike[str] | None = None) -> Path:
    return resolve_key_dir(key_dir) / KEY_FILENAME


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.parent / f".{KEY_FILENAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # independent of the umask
        if os.write(fd, pem) != len(pem):
            raise OSError(f"short write creating {tmp}")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)  # never leave part of a private key lying around (e.g. disk full)
        raise
    os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and fails instead of replacing a key someone else just made
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def load_or_create_key(key_dir: str | os.PathLike[str] | None = None) -> Ed25519PrivateKey:
    """This user's private key, generating it on first use."""
    path = key_path(key_dir)
    if not path.exists():
        _create_key_file(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SigningKeyError(f"signing key {path} has permissions {oct(mode)}; it must be readable by its owner only (chmod 600)")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} does not hold an Ed25519 private key")
    return key


def public_key_hex_of(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def fingerprint_of(public_key: str) -> str:
    """``SHA256:`` + the first 32 hex digits of SHA-256 over the raw 32-byte public key."""
    raw = bytes.fromhex(public_key)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()[:32]


def public_key_hex(key_dir: str | os.PathLike[str] | None = None) -> str:
    return public_key_hex_of(load_or_create_key(key_dir))


def key_fingerprint(key_dir: str | os.PathLike[str] | None = None) -> str:
    return fingerprint_of(public_key_hex(key_dir))


def sign(data: bytes, key_dir: str | os.PathLike[str] | None = None) -> bytes:
    """The 64-byte Ed25519 signature of ``data``."""
    return load_or_create_key(key_dir).sign(bytes(data))


def verify_signature(public_key: str, signature: bytes | str, data: bytes) -> bool:
    """True when ``signature`` (bytes or hex) is ``data`` signed by ``public_key`` (hex). Never raises on bad input."""
    try:
        sig = bytes.fromhex(signature) if isinstance(signature, str) else bytes(signature)
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        public.verify(sig, bytes(data))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
