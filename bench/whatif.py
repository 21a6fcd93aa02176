"""What-if forecast: a preset's minutes and dollars on named hardware ("8xH100", "1xA100", "4x4090"),
offline, from the workload's FLOPs per phase, the accelerator's peak and an assumed utilization (MFU).

    seconds(phase) = FLOPs(phase) / (count x peak FLOP/s x MFU(phase))

- FLOPs: the pretraining FLOPs are exact (the model's FLOPs per token, built on the meta device, x the
  preset's step count x tokens per step, plus the val-bpb forward passes). The other phases' token
  counts depend on datasets this forecast does not read (it must work offline and in a second), so
  each uses a stated token count from the preset where it pins one (num_iterations) or a documented
  assumption otherwise; every component says which (``basis``: "exact" or "assumed").
- peak: :func:`nanochat_core.flops.peak_flops` (the MFU table), by accelerator name.
- MFU: the median pretraining MFU of the submissions measured on the same accelerator, when there are
  any; else :data:`DEFAULT_MFU` with the band :data:`DEFAULT_MFU_BAND`. Non-training phases run at a
  stated fraction of the training MFU (evaluation batches are small, generation is latency bound).

The document is ``kind: forecast`` like ``nanobench estimate``'s: never a measurement.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanochat_core.config import WorkloadConfig

WHATIF_VERSION = 1
# Pretraining MFU assumed when no submission on the hardware class exists: ORIG's speedrun reports
# roughly 40-50% on 8xH100 (issue 13 cites ~46%); the band spans a poorly tuned box to a good one.
DEFAULT_MFU = 0.40
DEFAULT_MFU_BAND = (0.25, 0.50)
MFU_SOURCE_DEFAULT = "assumed: no submission on this hardware; default 40% (band 25-50%, ORIG's speedrun ~46% on H100)"
# Utilization of the other phases relative to pretraining's (stated assumptions, not measurements).
PHASE_MFU_FRACTION = {"pretrain": 1.0, "mid_train": 0.9, "sft": 0.5, "rl": 0.1, "base_eval": 0.5, "chat_eval": 0.1}
# Token counts assumed where the preset does not pin them (one pass over a dataset this forecast cannot read).
MID_MIXTURE_TOKENS = 0.45e9  # ORIG's midtraining mixture at d20: about 8 minutes of the speedrun's ~3 hours of pretraining
SFT_EXAMPLES = 23_000  # ORIG's SFT mixture (ARC, GSM8K, SmolTalk subset, identity, spelling)
SFT_TOKENS_PER_EXAMPLE = 512  # padded conversation length
CORE_FORWARD_TOKENS = 2.0e8  # the full 22-task CORE bundle: ~90k examples x choices x few-shot prompt tokens
CORE_TOKENS_PER_EXAMPLE = 1_000  # when core_max_per_task pins the example count: few-shot prompt x choices (at most 2 x seq_len)
CORE_TASKS = 22
CHAT_EVAL_PROBLEMS = 40_000  # ARC-Easy/Challenge, MMLU, GSM8K, HumanEval, SpellingBee test sets
CHAT_TOKENS_PER_PROBLEM = 600
TOKENIZER_CHARS_PER_S = 3.0e6  # BPE training speed (the smoke submission measured 3.1e6 chars/s on 2 CPU cores)
FIXED_SECONDS_PER_PHASE = 20.0  # process start, model build, checkpoint write
# CPUs: measured matmul throughput (fp32) x this utilization (the smoke submission trained at ~35 GFLOP/s
# on 2 EPYC cores whose 1024x1024 fp32 matmul runs at ~60-90 GFLOP/s).
CPU_TRAINING_UTILIZATION = 0.4
CPU_UTILIZATION_BAND = (0.2, 0.7)


class WhatIfError(ValueError):
    """A hardware spec or a forecast input that cannot be used; the message says why."""


@dataclass(frozen=True)
class Hardware:
    """`count` accelerators of one kind (`name`), each with `peak_flops` (bf16 dense) FLOP/s."""

    count: int
    name: str
    peak_flops: float
    kind: str = "gpu"  # "gpu" or "cpu"
    peak_source: str = "MFU table (nanochat_core.flops)"

    @property
    def label(self) -> str:
        return f"{self.count}x{self.name}" if self.kind == "gpu" else f"CPU ({self.name})"


_SPEC = re.compile(r"^\s*(?:(\d+)\s*[xX*]\s*)?(.+?)\s*$")


def parse_hardware(spec: str) -> Hardware:
    """"8xH100", "1xA100", "4x4090", "H200" (= 1x): count and accelerator name, its peak from the MFU table."""
    from nanochat_core.flops import peak_flops

    m = _SPEC.match(spec or "")
    if not m or not m.group(2):
        raise WhatIfError(f"--hardware {spec!r}: expected COUNTxNAME, e.g. 8xH100, 1xA100, 4x4090")
    count = int(m.group(1) or 1)
    name = m.group(2).strip()
    if count < 1:
        raise WhatIfError(f"--hardware {spec!r}: the count must be >= 1")
    peak = peak_flops(name)
    if peak is None:
        raise WhatIfError(f"--hardware {spec!r}: {name!r} is not in the MFU peak table (nanochat_core.flops); "
                          "name a listed accelerator (e.g. H100, H200, A100, L40S, 4090, MI300X)")
    return Hardware(count=count, name=name, peak_flops=peak)


def measure_cpu_flops(seconds: float = 0.25, n: int = 1024) -> float:
    """fp32 matmul FLOP/s of this CPU with torch's current thread count, measured for ~`seconds`."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return 2 * n**3 * reps / elapsed


def cpu_hardware(flops: float | None = None) -> Hardware:
    import os

    measured = measure_cpu_flops() if flops is None else flops
    return Hardware(count=1, name=f"{os.cpu_count() or 1} cores", peak_flops=measured, kind="cpu",
                    peak_source="measured here: 1024x1024 fp32 matmul for 0.25 s")


# ---------------------------------------------------------------------------------------------------
# FLOPs per phase
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseWork:
    name: str
    flops: float  # training / forward FLOPs of the phase
    basis: str  # "exact" or "assumed"
    detail: str
    fixed_seconds: float = FIXED_SECONDS_PER_PHASE
    plain_seconds: float = 0.0  # work that is not FLOP-bound (tokenizer BPE on the CPU)


def model_shape(w: WorkloadConfig) -> tuple[int, int]:
    """(parameters, training FLOPs per token) of the preset's model, built on the meta device (no memory, ms)."""
    import torch

    from nanochat_core.model import GPT, GPTConfig

    pc = w.pretrain
    with torch.device("meta"):
        model = GPT(GPTConfig.from_depth(pc.depth, vocab_size=w.tokenizer.vocab_size, seq_len=pc.seq_len))
    return model.num_params(), int(model.flops_per_token())


def pretrain_steps(w: WorkloadConfig, num_params: int) -> int:
    pc = w.pretrain
    if pc.num_iterations > 0:
        return pc.num_iterations
    return max(1, int(pc.target_param_data_ratio * num_params) // pc.total_batch_tokens)


def _evals(steps: int, every: int) -> int:
    return (steps // every if every > 0 else 0) + 1


def phase_work(w: WorkloadConfig, phases: list[str]) -> list[PhaseWork]:
    """The FLOPs of each phase in `phases` (download excluded: it is not counted)."""
    n_params, f_tok = model_shape(w)
    fwd = f_tok / 3  # forward only (training FLOPs are forward + backward = 3x forward)
    pc, mc, sc, rc = w.pretrain, w.mid_train, w.sft, w.rl
    out: list[PhaseWork] = []
    for name in phases:
        if name == "tokenizer":
            chars = w.tokenizer.max_chars
            out.append(PhaseWork(name, 0.0, "assumed", f"{chars:,} chars at {TOKENIZER_CHARS_PER_S:.1e} chars/s (BPE, CPU)",
                                 plain_seconds=chars / TOKENIZER_CHARS_PER_S))
        elif name == "pretrain":
            steps = pretrain_steps(w, n_params)
            tokens = steps * pc.total_batch_tokens
            evals = _evals(steps, pc.eval_every)
            flops = f_tok * tokens + fwd * pc.eval_tokens * evals
            out.append(PhaseWork(name, flops, "exact", f"{n_params:,} params, {f_tok:,} FLOPs/token x {steps:,} steps x "
                                 f"{pc.total_batch_tokens:,} tokens + {evals} val-bpb passes of {pc.eval_tokens:,} tokens"))
        elif name == "base_eval":
            be = w.base_eval
            if be.core_max_per_task > 0:
                per_example = min(CORE_TOKENS_PER_EXAMPLE, 2 * pc.seq_len)
                core_tokens, basis = CORE_TASKS * be.core_max_per_task * per_example, "assumed"
            else:
                core_tokens, basis = CORE_FORWARD_TOKENS, "assumed"
            flops = fwd * (core_tokens + 2 * be.bpb_tokens)
            out.append(PhaseWork(name, flops, basis, f"CORE ~{core_tokens:.2g} forward tokens (assumed) + 2 x {be.bpb_tokens:,} bpb tokens"))
        elif name == "mid_train":
            if mc.num_iterations > 0:
                tokens, basis, how = mc.num_iterations * mc.total_batch_tokens, "exact", f"{mc.num_iterations} steps"
            else:
                tokens, basis, how = MID_MIXTURE_TOKENS, "assumed", "one pass over the mixture (assumed size)"
            flops = f_tok * tokens + fwd * mc.eval_tokens * _evals(max(1, int(tokens // mc.total_batch_tokens)), mc.eval_every)
            out.append(PhaseWork(name, flops, basis, f"{tokens:.3g} tokens: {how}"))
        elif name == "sft":
            steps = sc.num_iterations if sc.num_iterations > 0 else max(1, SFT_EXAMPLES * sc.num_epochs // sc.target_examples_per_step)
            tokens = steps * sc.target_examples_per_step * min(SFT_TOKENS_PER_EXAMPLE, pc.seq_len)
            out.append(PhaseWork(name, f_tok * tokens, "assumed" if sc.num_iterations <= 0 else "exact",
                                 f"{steps:,} steps x {sc.target_examples_per_step} examples x ~{SFT_TOKENS_PER_EXAMPLE} tokens (assumed length)"))
        elif name == "rl":
            steps = rc.num_iterations if rc.num_iterations > 0 else max(1, 7_473 * rc.num_epochs // rc.examples_per_step)
            gen_tokens = steps * rc.examples_per_step * rc.num_samples * rc.max_new_tokens
            out.append(PhaseWork(name, (fwd + f_tok) * gen_tokens, "assumed",
                                 f"{steps} steps x {rc.examples_per_step} problems x {rc.num_samples} samples x {rc.max_new_tokens} tokens"))
        elif name == "chat_eval":
            ce = w.chat_eval
            problems = ce.max_problems * len(ce.tasks) if ce.max_problems > 0 else CHAT_EVAL_PROBLEMS
            tokens = problems * min(CHAT_TOKENS_PER_PROBLEM, pc.seq_len) * ce.num_samples
            out.append(PhaseWork(name, fwd * tokens, "assumed", f"{problems:,} problems x ~{CHAT_TOKENS_PER_PROBLEM} tokens (assumed)"))
    return out


# ---------------------------------------------------------------------------------------------------
# MFU from submissions
# ---------------------------------------------------------------------------------------------------


def accelerator_class(name: str) -> tuple | None:
    """The MFU-table row a device name resolves to (its hardware class), or None when unlisted."""
    from nanochat_core import flops

    tokens = flops.name_tokens(name) if hasattr(flops, "name_tokens") else set(name.upper().split())
    for row in flops.PEAK_BF16_FLOPS:
        model, qualifiers = (row[0], row[1]) if len(row) == 3 else (str(row[0]).upper(), ())
        if model in tokens and all(q in tokens for q in qualifiers):
            return tuple(row)
    return None


def submission_mfus(submissions_dir: Path, accelerator: str) -> list[float]:
    """Pretraining MFU (a fraction) of every measured submission whose GPUs are all of `accelerator`'s class."""
    table_key = accelerator_class
    want = table_key(accelerator)
    out: list[float] = []
    if want is None or not submissions_dir.is_dir():
        return out
    for path in sorted(submissions_dir.glob("*/*/result.json")):
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(r, dict) or r.get("kind") != "measured":
            continue
        devices = ((r.get("system") or {}).get("gpus") or {}).get("devices") or []
        names = {d.get("name", "") for d in devices if isinstance(d, dict)}
        mfu = (r.get("metrics") or {}).get("mfu")
        if names and all(table_key(n) == want for n in names) and isinstance(mfu, (int, float)) and 0 < mfu <= 100:
            out.append(mfu / 100)
    return out


def mfu_for(hw: Hardware, submissions_dir: Path | None) -> tuple[float, tuple[float, float], str]:
    """(expected MFU, (low, high), where it came from)."""
    if hw.kind == "cpu":
        return CPU_TRAINING_UTILIZATION, CPU_UTILIZATION_BAND, (
            f"assumed: {CPU_TRAINING_UTILIZATION:.0%} of the measured fp32 matmul rate (band "
            f"{CPU_UTILIZATION_BAND[0]:.0%}-{CPU_UTILIZATION_BAND[1]:.0%})")
    mfus = submission_mfus(submissions_dir, hw.name) if submissions_dir else []
    if mfus:
        mid = statistics.median(mfus)
        return mid, (min(mfus) * 0.9, min(1.0, max(mfus) * 1.1)), f"median of {len(mfus)} submission(s) on {hw.name}"
    return DEFAULT_MFU, DEFAULT_MFU_BAND, MFU_SOURCE_DEFAULT


# ---------------------------------------------------------------------------------------------------
# Reference prices (helper table, optional)
# ---------------------------------------------------------------------------------------------------


def reference_hourly_rate(hw: Hardware) -> tuple[float, str] | None:
    """The machine's USD/hour at the reference price table (bench/reference_prices.toml): count x the
    matching accelerator row's $/hour, with the row and the table's source; None when it lists no match."""
    if hw.kind != "gpu":
        return None
    try:
        from bench.reference_prices import load_table, match_accelerator

        table = load_table()
        # a bare name ("H100") means the SXM part, as in the MFU peak table
        row = (match_accelerator(f"{hw.name} SXM", table) if " " not in hw.name.strip() else None) or match_accelerator(hw.name, table)
    except (ImportError, OSError, ValueError):
        return None
    if row is None:
        return None
    rate = float(row["usd_per_hour"]) * hw.count
    return rate, (f"reference price: {hw.count} x ${float(row['usd_per_hour']):.2f}/h ({row.get('model', hw.name)}), "
                  f"{table.get('source', 'bench/reference_prices.toml')}, captured {table.get('captured_on', '?')}")


# ---------------------------------------------------------------------------------------------------
# The forecast
# ---------------------------------------------------------------------------------------------------


def forecast(w: WorkloadConfig, phases: list[str], hw: Hardware, *, hourly_rate: float | None,
             price_source: str, submissions_dir: Path | None = None) -> dict[str, Any]:
    """The what-if forecast document (kind: forecast): per phase and total, seconds and USD, low/expected/high."""
    mfu, (mfu_lo, mfu_hi), mfu_source = mfu_for(hw, submissions_dir)
    rate = hw.count * hw.peak_flops
    rows = []
    totals = [0.0, 0.0, 0.0]
    for work in phase_work(w, [p for p in phases if p != "download"]):
        frac = PHASE_MFU_FRACTION.get(work.name, 1.0)
        secs = []
        for m in (mfu_hi, mfu, mfu_lo):  # high MFU -> low time
            compute = work.flops / (rate * m * frac) if work.flops else 0.0
            secs.append(compute + work.plain_seconds + work.fixed_seconds)
        low, exp, high = secs
        if work.basis == "assumed":  # an assumed token count widens the band
            low, high = low * 0.5, high * 1.5
        rows.append({"name": work.name, "flops": work.flops, "basis": work.basis, "detail": work.detail,
                     "mfu": mfu * frac, "seconds_low": low, "seconds": exp, "seconds_high": high})
        totals = [totals[0] + low, totals[1] + exp, totals[2] + high]
    usd = [t / 3600 * hourly_rate for t in totals] if hourly_rate is not None else [math.nan] * 3
    return {
        "kind": "forecast",
        "method": "what-if: FLOPs / (count x peak x MFU); offline, nothing measured on the target hardware",
        "whatif_version": WHATIF_VERSION,
        "preset": w.preset,
        "hardware": {"label": hw.label, "count": hw.count, "name": hw.name, "kind": hw.kind,
                     "peak_flops_each": hw.peak_flops, "peak_source": hw.peak_source},
        "mfu": {"expected": mfu, "low": mfu_lo, "high": mfu_hi, "source": mfu_source,
                "phase_fractions": PHASE_MFU_FRACTION},
        "pricing": {"hourly_rate_usd": hourly_rate, "price_source": price_source},
        "phases": rows,
        "total": {"seconds_low": totals[0], "seconds": totals[1], "seconds_high": totals[2],
                  "usd_low": usd[0], "usd": usd[1], "usd_high": usd[2]},
    }


def human_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365 * 86400):.0f} years"
