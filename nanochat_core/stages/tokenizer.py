"""Stage `tokenizer`: train the BPE on the first characters of the training split, evaluate it, save it."""

from __future__ import annotations

import time

from nanochat_core import dataset
from nanochat_core.common import Runtime
from nanochat_core.config import WorkloadConfig
from nanochat_core.observer import EVAL, LOG
from nanochat_core.stages.download import data_files
from nanochat_core.tokenizer import TOKENIZER_FILE, Tokenizer, truncated_docs
from nanochat_core.tokenizer_eval import compression_report


def tokenizer_dir(rt: Runtime):
    return rt.artifacts_dir / "tokenizer"


def run(cfg: WorkloadConfig, rt: Runtime) -> dict:
    tc = cfg.tokenizer
    train_files, val_file = data_files(cfg.data, rt)
    chars = [0]

    def texts():
        for doc in truncated_docs(dataset.text_iterator_for_tokenizer(train_files, tc.max_chars, tc.doc_cap), tc.max_chars, tc.doc_cap):
            chars[0] += len(doc)
            yield doc

    t0 = time.perf_counter()
    tok = Tokenizer.train(texts(), tc.vocab_size)
    train_seconds = time.perf_counter() - t0
    if rt.is_local_main:  # the harness runs this stage as one process per node; each node writes its own copy
        tok.save(tokenizer_dir(rt))
    rt.barrier()
    path = tokenizer_dir(rt) / TOKENIZER_FILE
    rt.observer.event(LOG, f"tokenizer: {tok.vocab_size} tokens from {chars[0]:,} chars in {train_seconds:.1f}s")
    report = compression_report(tok, train_files[0], val_file)
    for row in report["ours"]:
        rt.observer.event(EVAL, f"compression/{row['text']}", value=row["ratio"])
    tb = tok.token_bytes()
    learned = tb[tb > 0].float()
    return {
        "tokenizer_path": str(path),
        "tokenizer_sha256": tok.sha256(),
        "vocab_size": tok.vocab_size,
        "train_chars": chars[0],
        "train_seconds": train_seconds,
        "chars_per_second": chars[0] / train_seconds if train_seconds > 0 else None,
        "token_bytes": {"min": int(learned.min()), "max": int(learned.max()), "mean": float(learned.mean()), "std": float(learned.std())},
        "compression": report,
    }
