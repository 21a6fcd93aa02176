"""ORIG's side work (extras.orig_side_work): CORE + samples during pretraining, base_loss in base_eval,
chat_eval on the mid checkpoint, sample files, the timed sub-phases, and the switch that turns it off."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from chat_stage_fixtures import build_base, fresh_artifacts, runtime, save_chat_run, tiny_config
from nanochat_core.config import ChatEvalConfig, ExtrasConfig
from nanochat_core.observer import EVAL, ListObserver
from nanochat_core.side_work import SideWork, write_samples


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.set_num_threads(1)
    return build_base(tmp_path_factory.mktemp("side_base"))


def with_extras(cfg, **fields):
    return dataclasses.replace(cfg, extras=dataclasses.replace(cfg.extras, **fields))


def test_core_cadence_is_origs(tmp_path):
    """CORE every core_every steps after step 0 and at the last step; never when off."""
    on = SideWork(with_extras(tiny_config(), orig_side_work=True, core_every=2000), runtime(tmp_path, tmp_path))
    assert [s for s in range(0, 5001) if on.core_due(s, s == 5000)] == [2000, 4000, 5000]
    off = SideWork(tiny_config(), runtime(tmp_path, tmp_path))
    assert not off.enabled and not any(off.core_due(s, s == 5000) for s in range(0, 5001))
    with pytest.raises(ValueError, match="core_every"):
        SideWork(with_extras(tiny_config(), orig_side_work=True, core_every=0), runtime(tmp_path, tmp_path))


def test_presets_choose_it():
    from bench.config import load_config

    config = load_config()
    assert config.preset("speedrun").workload.extras.orig_side_work is True
    assert config.preset("d32").workload.extras.orig_side_work is True  # inherited
    assert config.preset("smoke").workload.extras.orig_side_work is False
    assert ExtrasConfig() == ExtrasConfig(orig_side_work=False, core_every=2000, core_max_per_task=500)


def test_samples_file_is_a_list_of_prompt_completion(tmp_path):
    path = write_samples(tmp_path / "p" / "samples.json", [{"prompt": "a", "completion": "b", "extra": 1}])
    assert json.loads(path.read_text()) == [{"prompt": "a", "completion": "b"}]


def test_pretrain_runs_core_and_samples_and_evaluates_at_step_zero(base, tmp_path):
    from nanochat_core.stages import pretrain

    artifacts = fresh_artifacts(base[0], tmp_path / "run" / "artifacts")
    cfg = with_extras(tiny_config(), orig_side_work=True, core_every=4, core_max_per_task=2)
    cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, eval_every=3))
    obs = ListObserver()
    result = pretrain.run(cfg, runtime(artifacts, base[1], observer=obs))
    side = result["side_work"]
    assert side["orig_side_work"] is True
    assert [c["step"] for c in side["core"]] == [4, 6]  # every 4 steps and at the end (6)
    assert all(isinstance(c["core"], float) for c in side["core"])
    assert len(side["samples"]["samples"]) == 7 and side["samples"]["step"] == 6
    assert set(side["seconds"]) == {"val_bpb", "core", "samples"} and all(v > 0 for v in side["seconds"].values())
    evals = [(e["value"], e["metadata"]["step"]) for e in obs.of(EVAL)]
    assert [s for v, s in evals if v == "val_bpb"] == [0, 3, 6]  # step 0 too, as ORIG
    assert [s for v, s in evals if v == "core"] == [4, 6]


def test_pretrain_without_side_work_runs_no_core(base, tmp_path):
    from nanochat_core.stages import pretrain

    artifacts = fresh_artifacts(base[0], tmp_path / "run" / "artifacts")
    obs = ListObserver()
    result = pretrain.run(tiny_config(), runtime(artifacts, base[1], observer=obs))
    assert result["side_work"]["orig_side_work"] is False and "core" not in result["side_work"]
    assert "core" not in {e["value"] for e in obs.of(EVAL)}


def test_val_bpb_is_evaluated_with_the_model_that_trains(base, tmp_path, monkeypatch):
    """ORIG evaluates val bpb with the compiled model: the eval gets `train_model`, not the eager one."""
    from nanochat_core.stages import pretrain

    class Marked(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *a, **k):
            return self.inner(*a, **k)

    seen = []
    real = pretrain.evaluate_bpb
    monkeypatch.setattr(pretrain.torch, "compile", lambda model, **_: Marked(model))
    monkeypatch.setattr(pretrain, "evaluate_bpb", lambda model, *a, **k: (seen.append(type(model).__name__), real(model, *a, **k))[1])
    artifacts = fresh_artifacts(base[0], tmp_path / "run" / "artifacts")
    rt = runtime(artifacts, base[1])
    rt.compile = True
    pretrain.run(tiny_config(), rt)
    assert seen and set(seen) == {"Marked"}


def test_base_eval_runs_base_loss_and_writes_samples(base, tmp_path):
    from nanochat_core.stages import base_eval

    artifacts = fresh_artifacts(base[0], tmp_path / "run" / "artifacts")
    cfg = with_extras(tiny_config(), orig_side_work=True)
    cfg = dataclasses.replace(cfg, base_eval=dataclasses.replace(cfg.base_eval, core_max_per_task=2, bpb_tokens=256))
    out = base_eval.run(cfg, runtime(artifacts, base[1]))
    loss = out["side_work"]["base_loss"]
    assert 0 < loss["train_bpb"] < 20 and 0 < loss["val_bpb"] < 20 and loss["tokens_per_split"] == 256
    assert out["side_work"]["seconds"]["base_loss"] > 0
    samples = json.loads((tmp_path / "run" / "phases" / "base_eval" / "samples.json").read_text())
    assert len(samples) == 7 and all(set(s) == {"prompt", "completion"} for s in samples)
    assert samples[0]["prompt"] == "The capital of France is"
    off = base_eval.run(dataclasses.replace(cfg, extras=ExtrasConfig()), runtime(artifacts, base[1]))
    assert off["side_work"] == {"orig_side_work": False, "seconds": {}}


@pytest.mark.parametrize("side", [True, False])
def test_chat_eval_scores_the_mid_checkpoint_too(tmp_path, side):
    from nanochat_core.stages import chat_eval

    run_dir = save_chat_run(tmp_path / "run", stages=("mid", "sft"))
    cfg = with_extras(tiny_config(), orig_side_work=side)
    cfg = dataclasses.replace(cfg, chat_eval=ChatEvalConfig(tasks=("ARC-Easy",), max_problems=2, batch_size=2, source="sft"))
    obs = ListObserver()
    out = chat_eval.run(cfg, runtime(run_dir / "artifacts", tmp_path / "cache", observer=obs))
    phase = run_dir / "phases" / "chat_eval"
    samples = json.loads((phase / "samples.json").read_text())
    assert len(samples) >= 3 and all(set(s) == {"prompt", "completion"} for s in samples)
    assert out["source"] == "sft" and out["side_work"]["orig_side_work"] is side
    if side:
        mid = out["side_work"]["mid"]
        assert set(mid["chatcore_tasks"]) == {"ARC-Easy"} and mid["examples"] == 2
        assert json.loads((phase / "mid" / "chat_eval.json").read_text())["source"] == "mid"
        assert (phase / "mid" / "samples.json").exists()
        assert out["side_work"]["seconds"]["chat_eval_mid"] > 0
        chatcore = [e for e in obs.of(EVAL) if e["value"] == "chat_eval/ChatCORE"]
        assert len(chatcore) == 2
    else:
        assert not (phase / "mid").exists() and "mid" not in out["side_work"]


def test_result_metrics_say_whether_side_work_ran():
    from bench.result import collect_metrics

    on = {"orig_side_work": True, "seconds": {"core": 12.5}, "core": [{"step": 2000, "core": 0.1}]}
    off = {"orig_side_work": False, "seconds": {}}
    metrics = collect_metrics({"pretrain": {"result": {"side_work": on}}, "base_eval": {"result": {"side_work": off}},
                               "chat_eval": {"result": {}}})
    assert metrics["side_work"] == {"orig_side_work": True, "stages": {"pretrain": on, "base_eval": off}}
    assert "side_work" not in collect_metrics({"pretrain": {"result": {}}})
