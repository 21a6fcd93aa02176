"""LR multiplier (warmup, constant, linear warmdown to final_lr_frac) and the Muon momentum ramp."""

from __future__ import annotations

import pytest

from nanochat_core.schedules import lr_multiplier, muon_momentum


def _orig(step: int, steps: int = 100) -> float:
    return lr_multiplier(step, steps, warmup_ratio=0.0, warmdown_ratio=0.2, final_lr_frac=0.0)


def test_orig_schedule_constant_then_linear_warmdown_to_zero():
    assert [_orig(s) for s in range(0, 81)] == [1.0] * 81  # no warmup; constant through step 80
    assert _orig(90) == pytest.approx(0.5)
    assert _orig(99) == pytest.approx(0.05)
    assert _orig(100) == pytest.approx(0.0)
    values = [_orig(s) for s in range(80, 101)]
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly decreasing in the warmdown
    steps = [b - a for a, b in zip(values, values[1:])]
    assert max(steps) == pytest.approx(min(steps))  # linear


def test_warmdown_ends_at_final_lr_frac():
    f = lambda s: lr_multiplier(s, 50, warmup_ratio=0.0, warmdown_ratio=0.4, final_lr_frac=0.1)  # noqa: E731
    assert f(30) == 1.0
    assert f(40) == pytest.approx(0.55)
    assert f(50) == pytest.approx(0.1)


def test_warmup_is_linear_from_one_step():
    f = lambda s: lr_multiplier(s, 100, warmup_ratio=0.1, warmdown_ratio=0.2, final_lr_frac=0.0)  # noqa: E731
    assert [f(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f(10) == 1.0 and f(50) == 1.0


def test_no_warmdown_stays_at_one():
    assert all(lr_multiplier(s, 20, warmup_ratio=0.0, warmdown_ratio=0.0, final_lr_frac=0.0) == 1.0 for s in range(21))


def test_muon_momentum_ramp():
    m = lambda s: muon_momentum(s, start=0.85, end=0.95, ramp_steps=300)  # noqa: E731
    assert m(0) == pytest.approx(0.85)
    assert m(150) == pytest.approx(0.90)
    assert m(300) == pytest.approx(0.95)
    assert m(10_000) == pytest.approx(0.95)
    assert muon_momentum(0, start=0.85, end=0.95, ramp_steps=0) == 0.95
