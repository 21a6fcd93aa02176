"""Shared by the pretraining tests: a tiny preset on the shipped corpus, data + tokenizer prepared once.

`tiny_workload()` is the smoke preset shrunk with `dataclasses.replace`: depth 2, seq 64, a global
batch of 512 tokens (8 rows), 6 steps, 256 eval tokens, a 512-token vocabulary trained on 300k chars.
`prepare(root)` runs the real `download` and `tokenizer` stages into `root/cache` and
`root/template/artifacts`; `new_run(prepared, dest)` gives each run its own artifacts directory
holding a copy of that tokenizer. `STEP` events (from a `ListObserver` or a progress jsonl file) are
turned into (loss, fingerprint) lists by `step_records`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from bench.config import load_config
from nanochat_core.common import Runtime
from nanochat_core.config import WorkloadConfig
from nanochat_core.observer import STEP, ListObserver
from nanochat_core.stages import download, tokenizer as tokenizer_stage

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO_ROOT / "nanochat_core" / "data" / "corpus"
SEQ_LEN = 64
ROWS = 8  # rows per global batch
STEPS = 6


def tiny_workload(**pretrain_changes: Any) -> WorkloadConfig:
    """The smoke preset shrunk to seconds on one CPU thread; `pretrain_changes` override pretrain fields."""
    smoke = load_config().preset("smoke").workload
    pretrain = dataclasses.replace(
        smoke.pretrain,
        depth=2,
        seq_len=SEQ_LEN,
        total_batch_tokens=ROWS * SEQ_LEN,
        device_batch_size=4,  # grad accumulation 2 on one process, 1 on two
        num_iterations=STEPS,
        target_param_data_ratio=-1.0,
        eval_every=-1,
        eval_tokens=4 * SEQ_LEN,
        warmdown_ratio=0.5,  # the schedule changes within the 6 steps
        muon_momentum_ramp_steps=4,
        timing_skip_steps=1,
    )
    pretrain = dataclasses.replace(pretrain, **pretrain_changes)
    tok = dataclasses.replace(smoke.tokenizer, vocab_size=512, max_chars=300_000, doc_cap=10_000)
    return dataclasses.replace(smoke, preset="test-pretrain", seed=1234, tokenizer=tok, pretrain=pretrain)


def runtime(artifacts: Path, cache: Path, *, resume: bool = False, observer: Any = None) -> Runtime:
    """A single-process CPU runtime (no compile) writing into `artifacts`."""
    return Runtime(
        device=torch.device("cpu"), seed=1234, observer=observer if observer is not None else ListObserver(),
        artifacts_dir=artifacts, cache_dir=cache, compile=False, resume=resume,
    )


@dataclass(frozen=True)
class Prepared:
    """Where `prepare` left the shared inputs."""

    cfg: WorkloadConfig
    cache: Path
    tokenizer_dir: Path
    tokenizer_result: dict


def prepare(root: Path, cfg: WorkloadConfig | None = None) -> Prepared:
    """Run the download (shipped source) and tokenizer stages once into `root`."""
    cfg = cfg or tiny_workload()
    cache, template = root / "cache", root / "template" / "artifacts"
    rt = runtime(template, cache)
    download.run(cfg, rt)
    result = tokenizer_stage.run(cfg, rt)
    return Prepared(cfg, cache, tokenizer_stage.tokenizer_dir(rt), result)


def new_run(prepared: Prepared, dest: Path) -> Path:
    """A fresh artifacts directory `dest/artifacts` holding the prepared tokenizer; returns it."""
    artifacts = dest / "artifacts"
    shutil.copytree(prepared.tokenizer_dir, artifacts / "tokenizer")
    return artifacts


def write_config(cfg: WorkloadConfig, path: Path) -> Path:
    """The resolved config as the JSON file `python -m nanochat_core.stages` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg.to_dict()))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_records(events: Iterable[dict]) -> list[tuple[int, float, str]]:
    """(step, loss, fingerprint) of every STEP event, in order."""
    return [(e["value"], e["metadata"]["loss"], e["metadata"]["fingerprint"]) for e in events if e["key"] == STEP]
