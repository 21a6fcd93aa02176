"""issue 13: the calibrated estimate includes the loader's row-group reloads, which a 20-step calibration
never reaches (bench/estimate.py: row_group_loads, reload_component, measure_row_group_cost)."""

from __future__ import annotations

import pytest

from bench.estimate import measure_row_group_cost, reload_component, row_group_loads


def test_a_short_calibration_does_only_the_first_load_of_each_stream():
    # speedrun: 256 rows of 2049 tokens, ~1M tokens per row group: 20 steps stay in each stream's first group
    assert row_group_loads(20, 256, 2049, 1.0e6) == 256
    full = row_group_loads(21_400, 256, 2049, 1.0e6)
    assert full == 256 * 44  # ceil(21,400 x 2,049 / 1e6) groups per stream
    assert row_group_loads(0, 256, 2049, 1.0e6) == 0


def test_reload_cost_is_added_on_a_cpu_and_banded_on_a_gpu():
    kw = dict(full_steps=21_400, cal_steps=20, rows=256, window=2049, tokens_per_group=1.0e6, seconds_per_group=2.0)
    cpu = reload_component(hidden=False, **kw)
    extra = 256 * 44 - 256
    assert cpu.seconds.expected == pytest.approx(extra * 2.0) and cpu.scales_with_nproc
    gpu = reload_component(hidden=True, **kw)
    assert (gpu.seconds.low, gpu.seconds.expected, gpu.seconds.high) == (0.0, 0.0, pytest.approx(extra * 2.0))
    assert "background thread" in gpu.basis
    assert reload_component(hidden=False, **{**kw, "full_steps": 20}) is None  # nothing beyond the calibration


def test_row_group_cost_is_measured_on_real_data(tmp_path):
    from nanochat_core import dataset
    from nanochat_core.tokenizer import Tokenizer

    files = dataset.materialize_shipped_corpus(tmp_path / "corpus", docs_per_row_group=4)
    train, _ = dataset.split_files(dataset.list_parquet_files(tmp_path / "corpus"))
    tok = Tokenizer.train(["hello world, a small corpus for a tiny tokenizer " * 20], 300)
    tokens, seconds = measure_row_group_cost(train, tok, max_groups=2)
    assert tokens > 4 and seconds > 0
    assert files
