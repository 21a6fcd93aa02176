"""bench.toml -> presets: every bad value is a ConfigError naming its key; the shipped presets pin the spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config import _RULES, DEFAULT_CONFIG_PATH, ConfigError, load_config, workload_to_json
from nanochat_core.config import WorkloadConfig, from_dict

# One out-of-range value (of the right type) per rule in bench/config.py's _RULES.
BAD_VALUES: dict[tuple[str, str], object] = {
    ("tokenizer", "vocab_size"): 264,
    ("tokenizer", "max_chars"): 0,
    ("tokenizer", "doc_cap"): -5,
    ("data", "source"): "the-web",
    ("data", "num_shards"): 1824,
    ("data", "shards_first"): 0,
    ("pretrain", "depth"): 65,
    ("pretrain", "seq_len"): 96,
    ("pretrain", "total_batch_tokens"): 0,
    ("pretrain", "device_batch_size"): -1,
    ("pretrain", "matrix_lr"): 0.0,
    ("pretrain", "embedding_lr"): -0.2,
    ("pretrain", "unembedding_lr"): 0,
    ("pretrain", "warmup_ratio"): 1.5,
    ("pretrain", "warmdown_ratio"): -0.1,
    ("pretrain", "final_lr_frac"): 2.0,
    ("pretrain", "grad_clip"): -1.0,
    ("pretrain", "eval_tokens"): 0,
    ("base_eval", "bundle"): "online",
    ("base_eval", "core_max_per_task"): 0,
    ("chat_eval", "source"): "base",
    ("chat_eval", "temperature"): 2.5,
    ("sft", "init_lr_frac"): 0.0,
    ("mid_train", "init_lr_frac"): 1.01,
    ("rl", "init_lr_frac"): -0.5,
    ("rl", "num_samples"): 0,
}

MINIMAL = '[presets.p]\nseed = 1\n'


def _toml(value: object) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists print the same in TOML


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    return str(err.value)


def test_bad_value_table_covers_every_rule():
    assert set(BAD_VALUES) == set(_RULES)


@pytest.mark.parametrize("section, name", sorted(BAD_VALUES), ids=lambda v: str(v))
def test_out_of_range_value_names_the_key(tmp_path, section, name):
    msg = _error(tmp_path, f"{MINIMAL}[presets.p.{section}]\n{name} = {_toml(BAD_VALUES[(section, name)])}\n")
    assert f"'presets.p.{section}.{name}' must be {_RULES[(section, name)][1]}" in msg


@pytest.mark.parametrize("section, name", sorted(BAD_VALUES), ids=lambda v: str(v))
def test_the_good_default_of_each_ruled_key_passes(section, name):
    ok, _ = _RULES[(section, name)]
    assert ok(getattr(getattr(WorkloadConfig(preset="x"), section), name))


@pytest.mark.parametrize(
    "body, key, what",
    [
        ("[presets.p.pretrain]\ndepht = 20\n", "presets.p.pretrain.depht", "unknown key"),
        ("batch = 3\n", "presets.p.batch", "unknown key"),
        ("[presets.p.pretraining]\ndepth = 20\n", "presets.p.pretraining", "unknown key"),
        ("[presets.p.checks]\nprobe = 3\n", "presets.p.checks.probe", "unknown key"),
        ("[presets.p.pretrain]\ndepth = \"20\"\n", "presets.p.pretrain.depth", "must be an integer"),
        ("[presets.p.pretrain]\ndepth = 20.0\n", "presets.p.pretrain.depth", "must be an integer"),
        ("[presets.p.pretrain]\ndepth = true\n", "presets.p.pretrain.depth", "must be an integer"),
        ("[presets.p.pretrain]\nmatrix_lr = \"fast\"\n", "presets.p.pretrain.matrix_lr", "must be a number"),
        ("[presets.p.rl]\nenabled = 1\n", "presets.p.rl.enabled", "must be true or false"),
        ("[presets.p.data]\nsource = 3\n", "presets.p.data.source", "must be a string"),
        ("[presets.p.pretrain]\nadam_betas = [0.8]\n", "presets.p.pretrain.adam_betas", "must have 2 elements"),
        ("[presets.p.pretrain]\nadam_betas = 0.8\n", "presets.p.pretrain.adam_betas", "must be a list"),
        ("[presets.p.chat_eval]\ntasks = [\"MMLU\", 3]\n", "presets.p.chat_eval.tasks[1]", "must be a string"),
        ("[presets.p.checks]\nprobe_steps = \"8\"\n", "presets.p.checks.probe_steps", "must be an integer"),
        ("pretrain = 5\n", "presets.p.pretrain", "expected a table"),
    ],
)
def test_wrong_key_or_type_names_the_key(tmp_path, body, key, what):
    msg = _error(tmp_path, MINIMAL + body)
    assert key in msg and what in msg


def test_unknown_key_lists_the_allowed_ones(tmp_path):
    msg = _error(tmp_path, MINIMAL + "[presets.p.tokenizer]\nvocab = 3\n")
    assert "allowed keys: doc_cap, max_chars, vocab_size" in msg


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[presets.a]\ninherit = \"b\"\n[presets.b]\ninherit = \"a\"\n", "inheritance cycle a -> b -> a"),
        ("[presets.a]\ninherit = \"a\"\n", "inheritance cycle a -> a"),
        ("[presets.a]\ninherit = \"nope\"\n", "'presets.a.inherit' names unknown preset 'nope'"),
        ("[presets]\np = 3\n", "'presets.p' must be a table"),
        ("[harness]\nruns_dir = \"runs\"\n", "no [presets.<name>] tables"),
        ("[preset.p]\nseed = 1\n", "unknown top-level key 'preset'"),
        ("[harness]\nrun_dir = \"x\"\n" + MINIMAL, "unknown key 'harness.run_dir'"),
        ("[harness]\nprice_kind = \"free\"\n" + MINIMAL, "'harness.price_kind' must be one of"),
        ("[harness]\npower_interval_seconds = 0.5\n" + MINIMAL, "'harness.power_interval_seconds'"),
        (MINIMAL + "[presets.p.pretrain]\nseq_len = 256\ntotal_batch_tokens = 1000\n",
         "'presets.p.pretrain.total_batch_tokens' (1000) must be a multiple of seq_len (256)"),
        (MINIMAL + "[presets.p.pretrain]\nnum_iterations = -1\ntarget_param_data_ratio = 0.0\n",
         "'presets.p.pretrain': set num_iterations > 0 or target_param_data_ratio > 0"),
        ("[presets.p\nseed = 1\n", "not valid TOML"),
    ],
)
def test_structural_errors(tmp_path, text, fragment):
    assert fragment in _error(tmp_path, text)


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")
    cfg = load_config(_write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match="unknown preset 'q'; allowed: p"):
        cfg.preset("q")


def test_inheritance_deep_merges(tmp_path):
    cfg = load_config(_write(tmp_path, (
        "[presets.base]\nseed = 3\n[presets.base.pretrain]\ndepth = 8\nseq_len = 512\ntotal_batch_tokens = 4096\n"
        "[presets.child]\ninherit = \"base\"\n[presets.child.pretrain]\ndepth = 10\n"
    )))
    child = cfg.preset("child").workload
    assert (child.seed, child.pretrain.depth, child.pretrain.seq_len, child.pretrain.total_batch_tokens) == (3, 10, 512, 4096)
    assert child.preset == "child"
    assert cfg.preset("base").workload.pretrain.depth == 8


# ---- the shipped bench.toml ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load_config()


def test_shipped_config_loads_and_every_preset_resolves(shipped):
    assert shipped.path == DEFAULT_CONFIG_PATH
    assert {"smoke", "speedrun", "speedrun-rl", "d26", "d32"} <= set(shipped.presets)
    hashes = set()
    for name in shipped.presets:
        preset = shipped.preset(name)
        assert preset.workload.preset == name
        # the resolved config survives the JSON trip the stage processes make
        assert from_dict(WorkloadConfig, json.loads(workload_to_json(preset.workload))) == preset.workload
        assert preset.config_sha256() == shipped.preset(name).config_sha256()
        hashes.add(preset.config_sha256())
    assert len(hashes) == len(shipped.presets)


def test_speedrun_pins_the_spec(shipped):
    w = shipped.preset("speedrun").workload
    assert w.pretrain.depth == 20
    assert w.tokenizer.vocab_size == 65_536
    assert w.pretrain.seq_len == 2048
    assert w.pretrain.total_batch_tokens == 524_288
    assert w.pretrain.target_param_data_ratio == 20.0 and w.pretrain.num_iterations == -1
    assert w.data.num_shards == 240 and w.data.source == "fineweb-edu"
    assert (w.pretrain.matrix_lr, w.pretrain.embedding_lr, w.pretrain.unembedding_lr) == (0.02, 0.2, 0.004)
    assert w.pretrain.grad_clip == 1.0 and w.pretrain.warmdown_ratio == 0.2 and w.pretrain.final_lr_frac == 0.0
    assert w.tokenizer.max_chars == 2_000_000_000
    assert not w.rl.enabled


def test_larger_tiers_and_smoke(shipped):
    d26, d32 = shipped.preset("d26").workload, shipped.preset("d32").workload
    assert (d26.pretrain.depth, d26.data.num_shards) == (26, 450)
    assert (d32.pretrain.depth, d32.data.num_shards, d32.tokenizer.max_chars) == (32, 800, 4_000_000_000)
    assert d26.pretrain.total_batch_tokens == d32.pretrain.total_batch_tokens == 524_288  # inherited
    rl = shipped.preset("speedrun-rl").workload
    assert rl.rl.enabled and rl.chat_eval.source == "rl" and rl.pretrain == shipped.preset("speedrun").workload.pretrain
    smoke = shipped.preset("smoke")
    assert smoke.workload.data.source == "shipped" and smoke.workload.pretrain.depth == 4
    assert smoke.workload.tokenizer.vocab_size == 4096 and smoke.workload.pretrain.seq_len == 256
    assert smoke.checks.probe_steps == 8
