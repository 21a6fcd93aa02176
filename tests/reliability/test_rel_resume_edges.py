"""Resume edge cases found by the signal tests, made deterministic in-process.

A signal can land after pretraining wrote its final checkpoint but before the stage reported its result.
The resumed stage then takes no step; its result (final loss, probe, chain) must still equal the
uninterrupted run's, with no NaN, and the harness must be able to record it in state.json.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from pretrain_helpers import new_run, prepare, runtime  # noqa: E402

from bench.pipeline import RunState  # noqa: E402
from nanochat_core.stages import pretrain  # noqa: E402


@pytest.mark.slow  # the download and tokenizer stages in-process, then two short pretrainings (~40 s)
def test_resume_at_the_final_checkpoint_reports_the_uninterrupted_result(tmp_path):
    prepared = prepare(tmp_path / "prep")
    artifacts = new_run(prepared, tmp_path / "run")
    full = pretrain.run(prepared.cfg, runtime(artifacts, prepared.cache), probe_steps=2)
    again = pretrain.run(prepared.cfg, runtime(artifacts, prepared.cache, resume=True), probe_steps=2)
    assert again["start_step"] == full["steps"]
    for key in ("final_loss", "val_bpb", "min_val_bpb", "fingerprint_chain", "params_sha256", "checkpoint_sha256", "probe"):
        assert again[key] == full[key], key
    assert math.isfinite(again["final_loss"]) and again["probe"]["params_sha256"]


def test_run_state_records_a_nan_metric_as_null(tmp_path):
    state = RunState(tmp_path / "state.json", {"pretrain": {"ok": True, "seconds": 1.0, "result": {"final_loss": float("nan"),
                                                                                                       "losses": [1.0, float("inf")]}}})
    state.save()
    loaded = RunState.load(tmp_path / "state.json")
    assert loaded.phases["pretrain"]["result"] == {"final_loss": None, "losses": [1.0, None]}
