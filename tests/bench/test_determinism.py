import math

from bench.determinism import check_convergence, classify_probe, validity


def probe(losses, fps=None, params="p"):
    return {"steps": len(losses), "losses": losses, "fingerprints": fps or [f"f{i}" for i in range(len(losses))], "params_sha256": params}


def test_identical_runs_are_bitwise():
    a = probe([5.0, 4.5, 4.2])
    assert classify_probe(a, probe([5.0, 4.5, 4.2]), rel_tol=1e-4)["class"] == "bitwise"


def test_small_loss_noise_with_same_data_is_close_and_states_tolerance():
    out = classify_probe(probe([5.0, 4.5]), probe([5.0, 4.50001], params="q"), rel_tol=1e-4)
    assert out["class"] == "close"
    assert out["rel_tol"] == 1e-4
    assert 0 < out["max_rel_loss_diff"] < 1e-4


def test_different_data_or_large_difference_is_divergent():
    assert classify_probe(probe([5.0, 4.5]), probe([5.0, 4.5], fps=["f0", "zz"]), rel_tol=1e-4)["class"] == "divergent"
    assert classify_probe(probe([5.0, 4.5]), probe([5.0, 4.9]), rel_tol=1e-4)["class"] == "divergent"
    assert classify_probe(probe([5.0, math.nan]), probe([5.0, 4.5]), rel_tol=1e-4)["class"] == "divergent"


def test_short_probe_is_divergent_and_missing_is_not_checked():
    main = probe([5.0, 4.5, 4.2])
    assert classify_probe(main, probe([5.0, 4.5]), rel_tol=1e-4)["class"] == "divergent"
    assert classify_probe(main, None, rel_tol=1e-4)["class"] == "not_checked"


def test_convergence_band_and_validity():
    ok = check_convergence(1.2, (1.0, 1.5), "recorded runs")
    bad = check_convergence(1.7, (1.0, 1.5), "recorded runs")
    assert ok["ok"] and not bad["ok"] and "outside" in bad["reason"]
    assert check_convergence(1.2, (0.0, math.inf), "none")["band"] == [0.0, None]  # JSON-safe
    assert validity({"class": "bitwise"}, ok) == (True, [])
    valid, problems = validity({"class": "divergent", "reason": "x"}, bad)
    assert not valid and len(problems) == 2


# ---- GPU runs: kernels that are not bitwise reproducible (issue 13) ----------------------------------


def gpu_probe(losses, params):
    return {**probe(losses, params=params), "nondeterministic_kernels": True}


def test_gpu_drift_after_step_0_is_close_not_divergent():
    # flash-attention backward: step 0 identical, later steps drift ~1e-3 (beyond close_rel_tol=1e-4)
    main, repeat = gpu_probe([10.8, 9.9, 9.1, 8.6], "a"), gpu_probe([10.8, 9.9012, 9.1035, 8.6071], "b")
    out = classify_probe(main, repeat, rel_tol=1e-4, drift_rel_tol=1e-2)
    assert out["class"] == "close" and out["nondeterministic_kernels"] and out["drift_rel_tol"] == 1e-2
    assert "non-bitwise kernels" in out["reason"]
    # the same drift on a run that claims deterministic kernels (CPU) stays divergent
    cpu = classify_probe(probe([10.8, 9.9, 9.1, 8.6]), probe([10.8, 9.9012, 9.1035, 8.6071], params="b"),
                         rel_tol=1e-4, drift_rel_tol=1e-2)
    assert cpu["class"] == "divergent"


def test_gpu_probe_still_catches_real_divergence():
    main = gpu_probe([10.8, 9.9, 9.1, 8.6], "a")
    # a different seed or init shows at step 0, where same weights and batch must give the same loss
    seed = classify_probe(main, gpu_probe([10.9, 9.9, 9.1, 8.6], "b"), rel_tol=1e-4, drift_rel_tol=1e-2)
    assert seed["class"] == "divergent" and "step-0" in seed["reason"]
    # drift beyond the tolerance (a wrong learning rate, a desynchronized rank), NaNs, other data
    assert classify_probe(main, gpu_probe([10.8, 9.9, 9.6, 9.4], "b"), rel_tol=1e-4, drift_rel_tol=1e-2)["class"] == "divergent"
    nan = classify_probe(main, gpu_probe([10.8, 9.9, math.nan, 8.6], "b"), rel_tol=1e-4, drift_rel_tol=1e-2)
    assert nan["class"] == "divergent" and nan["max_rel_loss_diff"] is None
    other = {**gpu_probe([10.8, 9.9, 9.1, 8.6], "b"), "fingerprints": ["f0", "x", "f2", "f3"]}
    assert classify_probe(main, other, rel_tol=1e-4, drift_rel_tol=1e-2)["class"] == "divergent"
    # identical GPU runs are still bitwise
    assert classify_probe(main, gpu_probe([10.8, 9.9, 9.1, 8.6], "a"), rel_tol=1e-4, drift_rel_tol=1e-2)["class"] == "bitwise"


def test_the_stage_marks_cuda_probe_records_and_the_preset_sets_the_drift_tolerance():
    import inspect

    from bench.config import load_config
    from nanochat_core.stages import pretrain

    assert '"nondeterministic_kernels": rt.device.type == "cuda"' in inspect.getsource(pretrain.run)
    assert load_config().preset("speedrun").checks.nondeterministic_rel_tol == 1e-2
