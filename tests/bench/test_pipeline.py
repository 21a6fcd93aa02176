import json
import time

import pytest

from bench.config import load_config
from bench.phases import Launch, stage_command
from bench.pipeline import RunState, prior_attempt_seconds, selected_phases
from bench.result import phase_rows


def test_phase_selection_follows_the_preset_and_flags():
    cfg = load_config()
    smoke, rl = cfg.preset("smoke"), cfg.preset("speedrun-rl")
    assert selected_phases(smoke, None, None) == ["download", "tokenizer", "pretrain", "base_eval", "mid_train", "sft", "chat_eval"]
    assert "rl" in selected_phases(rl, None, None)
    assert selected_phases(smoke, ["pretrain", "base_eval"], None) == ["pretrain", "base_eval"]
    assert "download" not in selected_phases(smoke, None, ["download"])
    with pytest.raises(ValueError, match="unknown phase 'pretrian'"):
        selected_phases(smoke, ["pretrian"], None)


def test_stage_command_single_and_torchrun(tmp_path):
    one = stage_command("pretrain", run_dir=tmp_path, config_path=tmp_path / "c.json", cache_dir=tmp_path, launch=Launch(), resume=True, options={"probe_steps": 8})
    assert one[1:4] == ["-m", "nanochat_core.stages", "pretrain"] and "--resume" in one and "probe_steps=8" in one
    many = stage_command("pretrain", run_dir=tmp_path, config_path=tmp_path / "c.json", cache_dir=tmp_path, launch=Launch(nproc=8), resume=False, options={})
    assert "torch.distributed.run" in many and "--nproc_per_node=8" in many and "--standalone" in many
    with pytest.raises(ValueError, match="rdzv-endpoint"):
        Launch(nproc=8, nnodes=2).prefix()
    nodes = Launch(nproc=8, nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29500", rdzv_id="job.pretrain").prefix()
    assert "--node_rank=1" in nodes and "--rdzv_endpoint=10.0.0.1:29500" in nodes


def test_interrupted_attempt_time_is_carried_from_its_last_progress_event(tmp_path):
    started = time.time() - 100
    state = RunState(tmp_path / "state.json", {}, {"name": "pretrain", "started_unix": started})
    state.save()
    (tmp_path / "progress").mkdir()
    lines = [{"time_ms": int((started + 30) * 1000), "key": "step"}, {"time_ms": int((started + 42) * 1000), "key": "step"}]
    (tmp_path / "progress" / "pretrain.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    loaded = RunState.load(tmp_path / "state.json")
    assert prior_attempt_seconds(loaded, "pretrain", tmp_path) == pytest.approx(42, abs=0.01)
    assert prior_attempt_seconds(loaded, "sft", tmp_path) == 0.0


def test_phase_rows_are_in_pipeline_order_and_flag_what_counts():
    state = {
        "determinism_probe": {"seconds": 3.0, "result": {}},
        "pretrain": {"seconds": 10.0, "result": {"total_training_time": 7.5}, "power": {"energy_joules": None, "unavailable_reason": "no GPU"}},
        "download": {"seconds": 2.0, "result": {}},
    }
    rows = phase_rows(state)
    assert [r["name"] for r in rows] == ["download", "pretrain", "determinism_probe"]
    assert [r["counted"] for r in rows] == [False, True, False]
    assert rows[1]["steady_state_seconds"] == 7.5 and rows[1]["unavailable_reason"] == "no GPU"
