"""`bench.toml` -> frozen, validated configuration.

A preset resolves into a :class:`nanochat_core.config.WorkloadConfig` (the workload's math) plus the
harness-side :class:`Checks` of that preset. Every key is checked: unknown keys, wrong types and
out-of-range values raise :class:`ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanochat_core.config import ConfigError, WorkloadConfig, from_dict

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "bench.toml"


@dataclass(frozen=True, kw_only=True)
class HarnessConfig:
    runs_dir: str = "runs"
    cache_dir: str = "~/.cache/nanobench"
    price_kind: str = "on-demand"
    price_source: str = ""
    idle_baseline_seconds: float = 2.0
    power_interval_seconds: float = 0.1
    # Intermediate checkpoints of the training stages (a run-time setting: not in the workload hash). A stage
    # checkpoints every `checkpoint_minutes` of its run and, when > 0, every `checkpoint_every_steps` steps;
    # a preset may override both, per stage, in [presets.<name>.checkpoint].
    checkpoint_minutes: float = 10.0
    checkpoint_every_steps: int = 0


@dataclass(frozen=True, kw_only=True)
class Checks:
    probe_steps: int = 8  # pretraining steps re-run in a fresh process for the determinism probe
    val_bpb_band: tuple[float, float] = (0.0, float("inf"))  # final val bpb must fall inside
    val_bpb_band_source: str = "none recorded"
    close_rel_tol: float = 1e-4  # 'close' determinism: max relative loss difference
    # 'close' bound for the losses after step 0 when the run's kernels are not bitwise reproducible (CUDA:
    # flash-attention backward and atomics reorder fp sums); step 0 must still agree within close_rel_tol
    nondeterministic_rel_tol: float = 1e-2


TRAINING_STAGES = ("pretrain", "mid_train", "sft", "rl")


@dataclass(frozen=True, kw_only=True)
class CheckpointPolicy:
    """[presets.<name>.checkpoint]: the harness's checkpoint cadence for this preset (-1 = inherit)."""

    minutes: float = -1.0  # -1: [harness].checkpoint_minutes; 0: no time-based checkpoints
    every_steps: int = -1  # -1: [harness].checkpoint_every_steps; 0: no step-based checkpoints
    pretrain_every_steps: int = -1  # per stage; -1: every_steps
    mid_train_every_steps: int = -1
    sft_every_steps: int = -1
    rl_every_steps: int = -1

    def for_stage(self, stage: str, harness: "HarnessConfig") -> tuple[float, int]:
        """(minutes, every_steps) a training stage runs with."""
        minutes = harness.checkpoint_minutes if self.minutes < 0 else self.minutes
        steps = harness.checkpoint_every_steps if self.every_steps < 0 else self.every_steps
        per_stage = getattr(self, f"{stage}_every_steps", -1)
        return minutes, steps if per_stage < 0 else per_stage


@dataclass(frozen=True)
class Preset:
    name: str
    workload: WorkloadConfig
    checks: Checks
    checkpoint: CheckpointPolicy = field(default_factory=CheckpointPolicy)

    def config_sha256(self) -> str:
        return sha256_json(self.workload.to_dict())


@dataclass(frozen=True)
class BenchConfig:
    path: Path
    harness: HarnessConfig
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise ConfigError(f"unknown preset '{name}'; allowed: {', '.join(sorted(self.presets))}")
        raw = _resolve_inherit(self.presets, name, [])
        checks = from_dict(Checks, raw.pop("checks", {}), f"presets.{name}.checks")
        _validate_checks(checks, f"presets.{name}.checks")
        policy = from_dict(CheckpointPolicy, raw.pop("checkpoint", {}), f"presets.{name}.checkpoint")
        for f in dataclasses.fields(CheckpointPolicy):
            if getattr(policy, f.name) < 0 and getattr(policy, f.name) != -1:
                raise ConfigError(f"'presets.{name}.checkpoint.{f.name}' must be -1 (inherit) or >= 0, got {getattr(policy, f.name)!r}")
        workload = from_dict(WorkloadConfig, {"preset": name, **raw}, f"presets.{name}")
        validate_workload(workload)
        return Preset(name, workload, checks, policy)

    @property
    def cache_dir(self) -> Path:
        return Path(os.path.expanduser(self.harness.cache_dir))


def load_config(path: str | os.PathLike[str] | None = None) -> BenchConfig:
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    allowed = {"harness", "presets"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key '{unknown[0]}'; allowed keys: {', '.join(sorted(allowed))}")
    harness = from_dict(HarnessConfig, data.get("harness", {}), "harness")
    if harness.price_kind not in PRICE_KINDS:
        raise ConfigError(f"'harness.price_kind' must be one of {', '.join(PRICE_KINDS)}, got {harness.price_kind!r}")
    if not 0 <= harness.idle_baseline_seconds <= 3600:
        raise ConfigError(f"'harness.idle_baseline_seconds' must be a number >= 0 and <= 3600 (finite), got {harness.idle_baseline_seconds!r}")
    if not harness.checkpoint_minutes >= 0:
        raise ConfigError(f"'harness.checkpoint_minutes' must be a number >= 0 (0 = no time-based checkpoints), got {harness.checkpoint_minutes!r}")
    if harness.checkpoint_every_steps < 0:
        raise ConfigError(f"'harness.checkpoint_every_steps' must be an integer >= 0 (0 = none), got {harness.checkpoint_every_steps!r}")
    if not MIN_POWER_INTERVAL_S <= harness.power_interval_seconds <= 0.1:
        raise ConfigError(f"'harness.power_interval_seconds' must be a finite number from {MIN_POWER_INTERVAL_S} to 0.1 "
                          f"(10 Hz to 1 kHz sampling), got {harness.power_interval_seconds!r}")
    presets = data.get("presets", {})
    if not isinstance(presets, dict) or not presets:
        raise ConfigError(f"{path}: no [presets.<name>] tables")
    cfg = BenchConfig(path, harness, presets)
    for name in presets:  # fail early, naming the preset and key
        cfg.preset(name)
    return cfg


PRICE_KINDS = ("on-demand", "spot", "owned")
MIN_POWER_INTERVAL_S = 0.001  # 1 kHz: faster sampling only measures the sampler


def _resolve_inherit(presets: dict[str, Any], name: str, seen: list[str]) -> dict[str, Any]:
    if name in seen:
        raise ConfigError(f"presets: inheritance cycle {' -> '.join(seen + [name])}")
    raw = copy.deepcopy(presets[name])
    if not isinstance(raw, dict):
        raise ConfigError(f"'presets.{name}' must be a table")
    parent = raw.pop("inherit", None)
    if parent is None:
        return raw
    if parent not in presets:
        raise ConfigError(f"'presets.{name}.inherit' names unknown preset '{parent}'; allowed: {', '.join(sorted(presets))}")
    base = _resolve_inherit(presets, parent, seen + [name])
    return _deep_merge(base, raw)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# (section, field) -> (predicate, description of what is allowed)
_RULES: dict[tuple[str, str], tuple[Any, str]] = {
    ("tokenizer", "vocab_size"): (lambda v: 265 <= v <= 2**20, "an integer in [265, 1048576]"),
    ("tokenizer", "max_chars"): (lambda v: v > 0, "a positive integer"),
    ("tokenizer", "doc_cap"): (lambda v: v > 0, "a positive integer"),
    ("data", "source"): (lambda v: v in ("shipped", "fineweb-edu"), "'shipped' or 'fineweb-edu'"),
    ("data", "num_shards"): (lambda v: 2 <= v <= 1823, "an integer in [2, 1823]"),
    ("data", "shards_first"): (lambda v: v >= 1, "a positive integer"),
    ("pretrain", "depth"): (lambda v: 1 <= v <= 64, "an integer in [1, 64]"),
    ("pretrain", "seq_len"): (lambda v: v >= 8 and v & (v - 1) == 0, "a power of two >= 8"),
    ("pretrain", "total_batch_tokens"): (lambda v: v > 0, "a positive integer"),
    ("pretrain", "device_batch_size"): (lambda v: v >= 0, "0 (auto) or a positive integer"),
    ("pretrain", "matrix_lr"): (lambda v: v > 0, "a positive number"),
    ("pretrain", "embedding_lr"): (lambda v: v > 0, "a positive number"),
    ("pretrain", "unembedding_lr"): (lambda v: v > 0, "a positive number"),
    ("pretrain", "warmup_ratio"): (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("pretrain", "warmdown_ratio"): (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("pretrain", "final_lr_frac"): (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("pretrain", "grad_clip"): (lambda v: v >= 0, "a number >= 0 (0 disables)"),
    ("pretrain", "eval_tokens"): (lambda v: v > 0, "a positive integer"),
    ("base_eval", "bundle"): (lambda v: v in ("download", "offline"), "'download' or 'offline'"),
    ("base_eval", "core_max_per_task"): (lambda v: v == -1 or v > 0, "-1 (all) or a positive integer"),
    ("chat_eval", "source"): (lambda v: v in ("mid", "sft", "rl"), "'mid', 'sft' or 'rl'"),
    ("chat_eval", "temperature"): (lambda v: 0 <= v <= 2, "a number in [0, 2]"),
    ("sft", "init_lr_frac"): (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("mid_train", "init_lr_frac"): (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("rl", "init_lr_frac"): (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("rl", "num_samples"): (lambda v: v >= 1, "a positive integer"),
}


# Counts and sizes with no other rule: (section, field) -> smallest allowed value. A zero batch, sample
# count or token budget would otherwise only fail deep inside a stage, after minutes of compute.
_MINIMUMS: dict[tuple[str, str], int] = {
    ("pretrain", "timing_skip_steps"): 0,
    ("pretrain", "muon_momentum_ramp_steps"): 0,
    ("base_eval", "bpb_tokens"): 1,
    ("base_eval", "batch_size"): 1,
    ("mid_train", "device_batch_size"): 0,
    ("mid_train", "total_batch_tokens"): 1,
    ("mid_train", "eval_tokens"): 1,
    ("sft", "device_batch_size"): 1,
    ("sft", "target_examples_per_step"): 1,
    ("sft", "num_epochs"): 1,
    ("rl", "device_batch_size"): 1,
    ("rl", "examples_per_step"): 1,
    ("rl", "max_new_tokens"): 1,
    ("rl", "top_k"): 1,
    ("rl", "num_epochs"): 1,
    ("chat_eval", "max_new_tokens"): 1,
    ("chat_eval", "top_k"): 1,
    ("chat_eval", "num_samples"): 1,
    ("chat_eval", "batch_size"): 1,
    ("extras", "core_every"): 1,
    ("extras", "core_max_per_task"): 1,
}


# Sane ranges of the numeric fields (issue 15): checked for every preset before anything starts, so a
# value like `matrix_lr = 1e300` fails at once with the key and the range instead of minutes later.
# (section, field) -> (low, high), inclusive; a field not listed gets the generic bound below.
_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("", "seed"): (0, 2**63 - 1),
    ("tokenizer", "max_chars"): (1, 10**13),
    ("tokenizer", "doc_cap"): (1, 10**9),
    ("pretrain", "target_param_data_ratio"): (-1, 10_000),  # <= 0: num_iterations decides
    ("pretrain", "num_iterations"): (-1, 10**9),
    ("pretrain", "matrix_lr"): (0, 10),
    ("pretrain", "embedding_lr"): (0, 10),
    ("pretrain", "unembedding_lr"): (0, 10),
    ("pretrain", "adam_betas"): (0, 0.999999),
    ("pretrain", "weight_decay"): (0, 10),
    ("pretrain", "muon_momentum_start"): (0, 0.999999),
    ("pretrain", "muon_momentum_end"): (0, 0.999999),
    ("pretrain", "grad_clip"): (0, 1e6),
    ("pretrain", "total_batch_tokens"): (1, 2**34),
    ("pretrain", "device_batch_size"): (0, 2**20),
    ("pretrain", "eval_tokens"): (1, 10**12),
    ("rl", "temperature"): (0, 2),
    ("rl", "top_k"): (1, 2**20),
    ("chat_eval", "top_k"): (1, 2**20),
    ("chat_eval", "max_new_tokens"): (1, 2**20),
    ("rl", "max_new_tokens"): (1, 2**20),
    ("rl", "num_samples"): (1, 4096),
    ("chat_eval", "num_samples"): (1, 4096),
}
_GENERIC_INT = (-(10**12), 10**12)  # counts, steps, tokens: far beyond any real run, far below overflow
_GENERIC_FLOAT = (-1e6, 1e6)


def _fmt(bound: float) -> str:
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


def _check_ranges(w: WorkloadConfig) -> None:
    sections = [("", w)] + [(f.name, getattr(w, f.name)) for f in dataclasses.fields(w) if dataclasses.is_dataclass(getattr(w, f.name))]
    for section, obj in sections:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            values = value if isinstance(value, tuple) else (value,)
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if not numbers:
                continue
            lo, hi = _RANGES.get((section, f.name), _GENERIC_FLOAT if isinstance(numbers[0], float) else _GENERIC_INT)
            key = f"presets.{w.preset}.{section + '.' if section else ''}{f.name}"
            for v in numbers:
                if not (math.isfinite(v) and lo <= v <= hi):
                    shown = repr(v) if len(repr(v)) <= 30 else f"a {len(repr(v))}-digit number"
                    raise ConfigError(f"'{key}' must be a finite number from {_fmt(lo)} to {_fmt(hi)}, got {shown}")


def validate_workload(w: WorkloadConfig) -> None:
    for (section, name), (ok, allowed) in _RULES.items():
        value = getattr(getattr(w, section), name)
        if not ok(value):
            raise ConfigError(f"'presets.{w.preset}.{section}.{name}' must be {allowed}, got {value!r}")
    for (section, name), lowest in _MINIMUMS.items():
        value = getattr(getattr(w, section), name)
        if value < lowest:
            raise ConfigError(f"'presets.{w.preset}.{section}.{name}' must be an integer >= {lowest}, got {value!r}")
    _check_ranges(w)  # after the specific rules, so their wording wins where both apply
    pc = w.pretrain
    if pc.total_batch_tokens % pc.seq_len:
        raise ConfigError(
            f"'presets.{w.preset}.pretrain.total_batch_tokens' ({pc.total_batch_tokens}) must be a multiple of seq_len ({pc.seq_len})"
        )
    if pc.num_iterations <= 0 and pc.target_param_data_ratio <= 0:
        raise ConfigError(f"'presets.{w.preset}.pretrain': set num_iterations > 0 or target_param_data_ratio > 0")


def _validate_checks(c: Checks, where: str) -> None:
    if not 0 <= c.probe_steps <= 100_000:
        raise ConfigError(f"'{where}.probe_steps' must be an integer >= 0 and <= 100000, got {c.probe_steps!r}")
    for name in ("close_rel_tol", "nondeterministic_rel_tol"):
        value = getattr(c, name)
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise ConfigError(f"'{where}.{name}' must be a number >= 0 and <= 1 (finite), got {value!r}")
    lo, hi = c.val_bpb_band
    if not (0 <= lo <= 100 and (0 <= hi <= 100 or hi == float("inf"))):  # inf: the default "no upper bound"
        raise ConfigError(f"'{where}.val_bpb_band' must be [low, high] with 0 <= low <= high <= 100, got {list(c.val_bpb_band)!r}")
    if not lo <= hi:
        raise ConfigError(f"'{where}.val_bpb_band' must be [low, high] with low <= high, got {list(c.val_bpb_band)!r}")
    if not c.close_rel_tol >= 0:
        raise ConfigError(f"'{where}.close_rel_tol' must be a number >= 0, got {c.close_rel_tol!r}")
    if not c.nondeterministic_rel_tol >= 0:
        raise ConfigError(f"'{where}.nondeterministic_rel_tol' must be a number >= 0, got {c.nondeterministic_rel_tol!r}")


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list).encode()).hexdigest()


def workload_to_json(w: WorkloadConfig) -> str:
    return json.dumps(dataclasses.asdict(w), indent=2, sort_keys=True)
