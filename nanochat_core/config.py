"""Typed, frozen configuration of every workload stage.

`bench.toml` (read by the harness) resolves a preset into one :class:`WorkloadConfig`. Each stage
receives only its own section. Every field that changes the math is pinned by the preset; the only
hardware-dependent knob is `device_batch_size` (0 = derive from memory), and gradient accumulation
keeps the global batch identical on any number of devices.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    vocab_size: int = 65_536  # learned ranks + 9 special tokens
    max_chars: int = 2_000_000_000  # characters of training text fed to the BPE trainer
    doc_cap: int = 10_000  # only the first doc_cap characters of each document are used


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    source: str = "fineweb-edu"  # "fineweb-edu" (downloaded shards) or "shipped" (the bundled corpus)
    num_shards: int = 240  # training shards to download (the val shard is the last one present)
    shards_first: int = 8  # shards fetched before tokenizer training starts; the rest in the background


@dataclass(frozen=True, kw_only=True)
class PretrainConfig:
    depth: int = 20
    seq_len: int = 2048
    total_batch_tokens: int = 524_288  # global batch per optimizer step, in tokens
    device_batch_size: int = 0  # rows per micro-step per device; 0 = largest power of two that fits
    target_param_data_ratio: float = 20.0  # tokens = ratio * params (used when num_iterations < 0)
    num_iterations: int = -1  # explicit step count; overrides the ratio when > 0
    embedding_lr: float = 0.2  # AdamW, wte (scaled by (d_model/768)^-0.5)
    unembedding_lr: float = 0.004  # AdamW, lm_head (same scaling)
    matrix_lr: float = 0.02  # Muon, every 2-D block matrix
    adam_betas: tuple[float, float] = (0.8, 0.95)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    warmdown_ratio: float = 0.2
    final_lr_frac: float = 0.0
    muon_momentum_start: float = 0.85
    muon_momentum_end: float = 0.95
    muon_momentum_ramp_steps: int = 300
    grad_clip: float = 1.0  # global-norm clip (0 disables)
    eval_every: int = 250  # val bpb every N steps (and at the end); <= 0 only at the end
    eval_tokens: int = 20 * 524_288  # val tokens per bpb evaluation
    checkpoint_every: int = 0  # also checkpoint every N steps (0 = only at the end)
    timing_skip_steps: int = 10  # steady-state time excludes steps with index <= this


@dataclass(frozen=True, kw_only=True)
class BaseEvalConfig:
    core_max_per_task: int = -1  # -1 = all examples; presets pin a number
    bundle: str = "download"  # "download" (the full 22-task CORE bundle) or "offline" (shipped 18-task subset)
    bpb_tokens: int = 20 * 524_288  # train/val bpb tokens (base_loss)
    batch_size: int = 8  # prompts per forward pass for CORE


@dataclass(frozen=True, kw_only=True)
class MidTrainConfig:
    enabled: bool = True
    device_batch_size: int = 0
    total_batch_tokens: int = 524_288
    num_iterations: int = -1  # -1 = one pass over the mixture
    init_lr_frac: float = 1.0
    eval_every: int = 150
    eval_tokens: int = 20 * 524_288
    mixture_limit: int = -1  # cap rows per task (smoke); -1 = full mixture
    checkpoint_every: int = 0  # also checkpoint every N steps (0 = only at the end)


@dataclass(frozen=True, kw_only=True)
class SFTConfig:
    enabled: bool = True
    device_batch_size: int = 4
    target_examples_per_step: int = 32
    num_epochs: int = 1
    num_iterations: int = -1
    init_lr_frac: float = 0.02
    eval_every: int = 100
    eval_steps: int = 100
    eval_metrics_every: int = 200
    eval_metrics_max_problems: int = 1024
    mixture_limit: int = -1
    checkpoint_every: int = 0  # also checkpoint every N steps (0 = only at the end)


@dataclass(frozen=True, kw_only=True)
class RLConfig:
    enabled: bool = False
    num_samples: int = 16
    device_batch_size: int = 8
    examples_per_step: int = 16
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int = 50
    init_lr_frac: float = 0.05
    num_epochs: int = 1
    num_iterations: int = -1
    eval_every: int = 60
    eval_examples: int = 400
    checkpoint_every: int = 60  # ORIG saves every 60 steps and at the end (0 = only at the end)


@dataclass(frozen=True, kw_only=True)
class ChatEvalConfig:
    tasks: tuple[str, ...] = ("ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee")
    max_problems: int = -1  # per task; -1 = all
    max_new_tokens: int = 512
    temperature: float = 0.0
    top_k: int = 50
    num_samples: int = 1
    batch_size: int = 8  # categorical tasks
    source: str = "sft"  # which checkpoint the chat_eval phase scores


@dataclass(frozen=True, kw_only=True)
class ExtrasConfig:
    """The work ORIG's speedrun does beside the pipeline proper (docs/fidelity.md, "the pipeline's other
    work"): CORE (core_max_per_task per task) and greedy samples every `core_every` pretraining steps
    and at the end; base_loss (train/val bpb on base_eval.bpb_tokens + samples) in base_eval; chat_eval
    on the mid checkpoint as well as the scored one. Off: none of it runs, and the results say so."""

    orig_side_work: bool = False  # bench.toml turns it on for the speedrun family
    core_every: int = 2000  # pretraining steps between CORE evaluations (and at the last step)
    core_max_per_task: int = 500  # examples per task for those evaluations (ORIG: 500)


@dataclass(frozen=True, kw_only=True)
class WorkloadConfig:
    """One preset, fully resolved. Its hash identifies the workload in a result bundle."""

    preset: str
    seed: int = 42
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    base_eval: BaseEvalConfig = field(default_factory=BaseEvalConfig)
    mid_train: MidTrainConfig = field(default_factory=MidTrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    chat_eval: ChatEvalConfig = field(default_factory=ChatEvalConfig)
    extras: ExtrasConfig = field(default_factory=ExtrasConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build a (nested) config dataclass from plain data, checking every key and type.

    Raises ``ConfigError`` naming the offending key, its expected type and the allowed keys.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown key '{key}'; allowed keys: {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    hints = _type_hints(cls)
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names it."""


def _type_hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    import typing

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        if isinstance(value, int) and abs(value) > 2**63:
            raise ConfigError(f"'{key}' must be a finite number in range, got a {len(str(value))}-digit integer")
        if not math.isfinite(value):
            raise ConfigError(f"'{key}' must be a finite number, got {value!r}")  # nan, inf: never meaningful here
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a string, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"'{key}' must have {len(args)} elements, got {len(value)}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    return value
