"""Bad input: bench.toml, swept over EVERY field of every table (generated from the dataclasses, so a new
field is covered automatically). tests/bench/test_config.py checks one bad value per range rule and
samples of type errors; this sweep adds, for each field: a wrong type, an unknown sibling key, and for
counts/sizes without a range rule the value that would only have crashed a stage minutes later.
Every case must raise ConfigError naming the exact key and what is allowed."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from bench.config import Checks, ConfigError, HarnessConfig, load_config
from nanochat_core.config import WorkloadConfig

SECTIONS = {f.name: f.type for f in dataclasses.fields(WorkloadConfig) if dataclasses.is_dataclass(typing.get_type_hints(WorkloadConfig)[f.name])}
MINIMAL = "[presets.p]\nseed = 1\n"


def _fields(cls: type) -> list[tuple[str, typing.Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _wrong_value(tp: typing.Any) -> tuple[object, str]:
    """A TOML value of the wrong type for `tp`, and the words the error must use."""
    if tp is bool:
        return "yes", "must be true or false"
    if tp is int:
        return 1.5, "must be an integer"
    if tp is float:
        return "fast", "must be a number"
    if tp is str:
        return 7, "must be a string"
    if typing.get_origin(tp) is tuple:
        return "not-a-list", "must be a list"
    raise AssertionError(f"no wrong value for {tp}")


def _cases() -> list[tuple[str, str, str, str]]:
    """(id, toml text, key the error must name, what it must say)."""
    out = []
    hints = typing.get_type_hints(WorkloadConfig)
    for section in SECTIONS:
        for name, tp in _fields(hints[section]):
            value, what = _wrong_value(tp)
            key = f"presets.p.{section}.{name}"
            out.append((key, f"{MINIMAL}[presets.p.{section}]\n{name} = {json.dumps(value)}\n", key, what))
        out.append((f"presets.p.{section}.<unknown>", f"{MINIMAL}[presets.p.{section}]\nbogus_key = 1\n",
                    f"presets.p.{section}.bogus_key", "allowed keys: "))
    for name, tp in _fields(Checks):
        value, what = _wrong_value(tp)
        key = f"presets.p.checks.{name}"
        out.append((key, f"{MINIMAL}[presets.p.checks]\n{name} = {json.dumps(value)}\n", key, what))
    for name, tp in _fields(HarnessConfig):
        value, what = _wrong_value(tp)
        key = f"harness.{name}"
        out.append((key, f"[harness]\n{name} = {json.dumps(value)}\n{MINIMAL}", key, what))
    for name in ("seed",):
        out.append((f"presets.p.{name}", f"[presets.p]\n{name} = \"42\"\n", f"presets.p.{name}", "must be an integer"))
    return out


# Counts and sizes that used to pass validation and then fail inside a stage (division by zero, empty batch).
NONSENSE_VALUES = [
    ("base_eval", "bpb_tokens", 0, "must be an integer >= 1"),
    ("base_eval", "batch_size", 0, "must be an integer >= 1"),
    ("mid_train", "total_batch_tokens", 0, "must be an integer >= 1"),
    ("mid_train", "device_batch_size", -4, "must be an integer >= 0"),
    ("sft", "device_batch_size", 0, "must be an integer >= 1"),
    ("sft", "target_examples_per_step", 0, "must be an integer >= 1"),
    ("sft", "num_epochs", 0, "must be an integer >= 1"),
    ("rl", "device_batch_size", 0, "must be an integer >= 1"),
    ("rl", "examples_per_step", 0, "must be an integer >= 1"),
    ("rl", "max_new_tokens", 0, "must be an integer >= 1"),
    ("rl", "top_k", 0, "must be an integer >= 1"),
    ("chat_eval", "max_new_tokens", 0, "must be an integer >= 1"),
    ("chat_eval", "top_k", -1, "must be an integer >= 1"),
    ("chat_eval", "num_samples", 0, "must be an integer >= 1"),
    ("chat_eval", "batch_size", 0, "must be an integer >= 1"),
    ("pretrain", "timing_skip_steps", -1, "must be an integer >= 0"),
    ("checks", "probe_steps", -1, "must be an integer >= 0"),
    ("checks", "val_bpb_band", [2.0, 1.0], "low <= high"),
    ("checks", "close_rel_tol", -1e-4, "must be a number >= 0"),
]

CASES = _cases()


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bench.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_the_sweep_covers_every_field():
    hints = typing.get_type_hints(WorkloadConfig)
    n_fields = sum(len(dataclasses.fields(hints[s])) for s in SECTIONS)
    assert len(CASES) == n_fields + len(SECTIONS) + len(dataclasses.fields(Checks)) + len(dataclasses.fields(HarnessConfig)) + 1
    assert n_fields > 70


@pytest.mark.parametrize(("text", "key", "what"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_field_with_a_wrong_type_or_unknown_key_names_the_key(tmp_path, text, key, what):
    msg = _error(tmp_path, text)
    assert f"'{key}'" in msg and what in msg, msg


@pytest.mark.parametrize(("section", "name", "value", "what"), NONSENSE_VALUES, ids=[f"{s}.{n}" for s, n, *_ in NONSENSE_VALUES])
def test_counts_that_would_crash_a_stage_are_rejected_up_front(tmp_path, section, name, value, what):
    msg = _error(tmp_path, f"{MINIMAL}[presets.p.{section}]\n{name} = {json.dumps(value)}\n")
    assert f"'presets.p.{section}.{name}' must" in msg and what in msg, msg


def test_harness_negative_idle_baseline_is_rejected(tmp_path):
    msg = _error(tmp_path, f"[harness]\nidle_baseline_seconds = -1.0\n{MINIMAL}")
    assert "'harness.idle_baseline_seconds' must be a number >= 0" in msg


def test_shipped_presets_still_resolve():
    cfg = load_config()
    assert {cfg.preset(name).name for name in cfg.presets} >= {"smoke", "speedrun"}
