"""What exactly ran: hashes of the workload's code, config, tokenizer, data and eval data.

A preset can pin these values (`bench/pins/<preset>.json`); `nanobench verify` then checks that a
result ran the pinned workload. The `smoke` data is shipped, so everything about it is pinned;
downloaded data is pinned by its recorded manifest (sha256 of every shard, trust on first use).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nanochat_core
from bench.config import Preset, sha256_json
from bench.hashing import hash_tree, sha256_bytes

PINS_DIR = Path(__file__).resolve().parent / "pins"
CODE_ROOT = Path(nanochat_core.__file__).resolve().parent
# The workload's code: every Python file and the chat UI. Shipped data is identified separately.
CODE_INCLUDE = ["*.py", "web/*.html"]
CODE_EXCLUDE = ["__pycache__", "data"]


def code_sha256() -> str:
    return hash_tree(CODE_ROOT, include=CODE_INCLUDE, exclude=CODE_EXCLUDE)


def shipped_core_sha256() -> str:
    """The offline CORE subset (task files + config) as shipped."""
    return hash_tree(CODE_ROOT / "data" / "core", include=["*.jsonl.gz", "core.json"])


def shipped_chat_sha256() -> str:
    return hash_tree(CODE_ROOT / "data" / "chat", include=["*.jsonl.gz"])


def data_manifest_sha256(manifest_path: str | Path | None, source: str) -> str | None:
    """Shipped corpus: the hashes of the two shipped source files (stable across pyarrow versions).
    Downloaded shards: the canonical {file: sha256} map of the data manifest."""
    if source == "shipped":
        from nanochat_core.dataset import SHIPPED_CORPUS_SHA256

        return sha256_json(SHIPPED_CORPUS_SHA256)
    if manifest_path is None or not Path(manifest_path).exists():
        return None
    entries = json.loads(Path(manifest_path).read_text())
    entries = entries.get("files", entries) if isinstance(entries, dict) else entries
    return sha256_json({name: e["sha256"] for name, e in sorted(entries.items()) if isinstance(e, dict) and "sha256" in e})


def static_identity(preset: Preset) -> dict[str, Any]:
    """The part of the identity that is known before running (code, config, shipped data)."""
    w = preset.workload
    ident: dict[str, Any] = {
        "spec_version": nanochat_core.SPEC_VERSION,
        "code_sha256": code_sha256(),
        "config_sha256": preset.config_sha256(),
    }
    if w.data.source == "shipped":
        ident["data_manifest_sha256"] = data_manifest_sha256(None, "shipped")
    if w.base_eval.bundle == "offline":
        ident["eval_data_sha256"] = sha256_json({"core": shipped_core_sha256(), "chat": shipped_chat_sha256()})
    return ident


def pins_path(preset_name: str) -> Path:
    return PINS_DIR / f"{preset_name}.json"


def load_preset_pins(preset_name: str) -> dict[str, Any] | None:
    path = pins_path(preset_name)
    return json.loads(path.read_text()) if path.exists() else None


def identity_digest(identity: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(identity, sort_keys=True).encode())
