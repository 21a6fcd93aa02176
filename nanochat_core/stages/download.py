"""Stage `download`: put the pretraining text on local disk (shards, or the shipped corpus)."""

from __future__ import annotations

import time
from pathlib import Path

from nanochat_core import dataset
from nanochat_core.common import Runtime
from nanochat_core.config import DataConfig, WorkloadConfig
from nanochat_core.observer import PROGRESS


def data_dir(data: DataConfig, rt: Runtime) -> Path:
    if data.source == "shipped":
        return rt.cache_dir / "shipped_corpus"
    if data.source == "fineweb-edu":
        return rt.cache_dir / "base_data"
    raise ValueError(f"unknown data source {data.source!r}; expected 'shipped' or 'fineweb-edu'")


def data_files(data: DataConfig, rt: Runtime) -> tuple[list[str], str]:
    """(train files, val file) of the configured source; fails clearly if the download did not run."""
    files = dataset.list_parquet_files(data_dir(data, rt))
    if len(files) < 2:
        raise FileNotFoundError(
            f"no pretraining data in {data_dir(data, rt)} (need >= 2 parquet files); run the download phase first"
        )
    return dataset.split_files(files)


def manifest_path(data: DataConfig, rt: Runtime) -> Path:
    return data_dir(data, rt) / "manifest.json"


def run(cfg: WorkloadConfig, rt: Runtime, *, first_only: bool = False, rest_only: bool = False) -> dict:
    """Fetch the data. For FineWeb-Edu, `first_only` fetches the shards the tokenizer needs and
    `rest_only` the remainder (the harness overlaps the latter with tokenizer training)."""
    t0 = time.perf_counter()
    d = data_dir(cfg.data, rt)
    d.mkdir(parents=True, exist_ok=True)
    if cfg.data.source == "shipped":
        files = dataset.materialize_shipped_corpus(d, docs_per_row_group=4)
    else:
        n, first = cfg.data.num_shards, min(cfg.data.shards_first, cfg.data.num_shards)
        indices = list(range(first)) if first_only else list(range(first, n)) if rest_only else list(range(n))
        done = [0]

        def on_complete(_path: str) -> None:
            done[0] += 1
            rt.observer.event(PROGRESS, done[0], total=len(indices), what="shards")

        files = dataset.download_shards(d, indices, on_complete=on_complete)
    if not first_only:
        _fetch_eval_data(cfg, rt)
    return {"data_dir": str(d), "files": len(files), "seconds": time.perf_counter() - t0}


def _fetch_eval_data(cfg: WorkloadConfig, rt: Runtime) -> None:
    """The CORE bundle and the chat/task datasets, when the preset uses the downloaded versions."""
    if cfg.base_eval.bundle == "download":
        from nanochat_core.evals.bundle import ensure_eval_bundle

        rt.observer.event(PROGRESS, 0, total=1, what="CORE eval bundle")
        ensure_eval_bundle(rt.cache_dir)
    if cfg.data.source != "shipped":
        from nanochat_core.tasks.hub import prefetch_all

        rt.observer.event(PROGRESS, 0, total=1, what="task datasets")
        prefetch_all(rt.cache_dir)
